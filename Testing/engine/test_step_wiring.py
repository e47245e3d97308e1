"""What one iteration of a step feeds the losses (training/incremental.py, make_step_batch): the old
model's outputs from the FROZEN OLD model, Ỹ from the old model's logits (not the grown model's), the
running prototypes updated on Ỹ. Each check fails when that input is swapped for its look-alike."""
import torch

from ciss_engine.api.settings import PcddSettings
from ciss_engine.network import NetworkConfig, build_network, grow_classifier
from ciss_engine.prototypes import FeaturePrototypes, local_prototypes
from ciss_engine.pseudo_labels import make_pseudo_labels
from ciss_engine.strategies.base import StepContext
from ciss_engine.strategies.pcdd import PrototypeCalibratedDistillation
from ciss_engine.training.incremental import make_step_batch
from ciss_engine.training.sampler import PatchBatch

NUM_OLD, NUM_NEW, CHANNELS = 2, 1, 8


def _networks():
    torch.manual_seed(0)
    old = build_network(NetworkConfig(init_filters=CHANNELS, out_channels=1 + NUM_OLD)).eval()
    torch.manual_seed(1)  # a grown model that has drifted far from the old one
    grown = grow_classifier(build_network(NetworkConfig(init_filters=CHANNELS, out_channels=1 + NUM_OLD)), NUM_NEW).eval()
    return old, grown


def _strategy() -> PrototypeCalibratedDistillation:
    context = StepContext(NUM_OLD, NUM_NEW, FeaturePrototypes.empty(1 + NUM_OLD, CHANNELS), FeaturePrototypes.empty(1 + NUM_OLD + NUM_NEW, CHANNELS))
    return PrototypeCalibratedDistillation(context, PcddSettings())


def _patch() -> PatchBatch:
    generator = torch.Generator().manual_seed(2)
    labels = torch.zeros(2, 16, 16, 16, dtype=torch.long)
    labels[:, 4:9, 4:9, 4:9] = NUM_OLD + 1
    return PatchBatch(torch.randn(2, 1, 16, 16, 16, generator=generator), labels)


THRESHOLDS = torch.full((NUM_OLD,), 10.0)  # every old-class argmax is confident: Ỹ depends on whose logits


def test_old_outputs_and_pseudo_labels_come_from_the_old_model():
    old, grown = _networks()
    patch = _patch()
    with torch.no_grad():
        batch = make_step_batch(patch, grown, old, _strategy(), THRESHOLDS)
        old_logits, old_features = old.forward_with_features(patch.images)
        new_logits, new_features = grown.forward_with_features(patch.images)
    torch.testing.assert_close(batch.features_old, old_features)
    torch.testing.assert_close(batch.logits_old, old_logits)
    torch.testing.assert_close(batch.features_new, new_features)
    assert not torch.allclose(old_features, new_features)
    expected = make_pseudo_labels(patch.labels, old_logits, THRESHOLDS, NUM_OLD)
    from_grown = make_pseudo_labels(patch.labels, new_logits[:, : 1 + NUM_OLD], THRESHOLDS, NUM_OLD)
    assert torch.equal(batch.pseudo_labels, expected) and not torch.equal(expected, from_grown)
    assert torch.equal(batch.labels, patch.labels)
    assert torch.equal(batch.old_region, (expected >= 1) & (expected <= NUM_OLD))


def test_running_prototypes_average_current_features_on_background_and_new_organs_of_the_pseudo_labels():
    old, grown = _networks()
    strategy = _strategy()
    with torch.no_grad():
        batch = make_step_batch(_patch(), grown, old, strategy, THRESHOLDS)
    running = strategy.context.running_prototypes
    expected, present = local_prototypes(batch.features_new, batch.pseudo_labels, 1 + NUM_OLD + NUM_NEW)
    for row in (0, 1 + NUM_OLD):  # background of Ỹ and the new organ
        assert present[row]
        torch.testing.assert_close(running.pre.as_tensor()[row], expected[row], rtol=1e-5, atol=1e-6)
    assert int(running.pre.counts[1 : 1 + NUM_OLD].sum()) == 0  # old organs keep their stored prototypes
    background_of_labels = local_prototypes(batch.features_new, batch.labels, 1 + NUM_OLD + NUM_NEW)[0][0]
    assert not torch.allclose(running.pre.as_tensor()[0], background_of_labels, rtol=1e-3)
    torch.testing.assert_close(running.post.as_tensor()[0], local_prototypes(batch.features_new.relu(), batch.pseudo_labels, 4)[0][0], rtol=1e-5, atol=1e-6)


def test_gradient_share_sums_survive_a_checkpoint():
    from ciss_engine.training.gradient_shares import ShareAverage

    shares = ShareAverage()
    shares.add({"unbiased_ce": 0.5, "dapd": 0.1})
    shares.add({"unbiased_ce": 0.3, "dapd": 0.3})
    restored = ShareAverage()
    restored.restore(shares.to_tensors())
    assert restored.measurements == 2 and restored.mean() == shares.mean() == {"unbiased_ce": 0.4, "dapd": 0.2}
