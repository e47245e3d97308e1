"""What one iteration of a domain step feeds Dual-Alignment (training/adapt.py, make_domain_batch, and
strategies/dual_alignment.py): CNA gets the FROZEN previous model's bottleneck, CRA the replay buffer's vectors,
Ỹ comes from the previous model's logits. Each check fails when that input is swapped for its look-alike."""
import dataclasses

import pytest
import torch

from ciss_engine.api.settings import DualAlignmentSettings
from ciss_engine.losses.hsic import HsicAlignment
from ciss_engine.network import NetworkConfig, build_network
from ciss_engine.prototypes import IGNORE_INDEX
from ciss_engine.pseudo_labels import partial_label_targets
from ciss_engine.replay_buffer import ReplayBuffer
from ciss_engine.strategies.alignment_blocks import bottleneck_classes, pair_by_class, pair_positions
from ciss_engine.strategies.domain import DomainContext
from ciss_engine.strategies.dual_alignment import DualAlignment, teacher_correct
from ciss_engine.training.adapt import make_domain_batch
from ciss_engine.training.sampler import PatchBatch

CLASSES, FILTERS = 3, 8
BOTTLENECK = FILTERS * 8  # SegResNet's 4 stages double the width 3 times
UNLABELLED = torch.tensor([False, False, True])  # organ 1 labelled, organ 2 pseudo-labelled
THRESHOLDS = torch.full((CLASSES - 1,), 10.0)  # every organ argmax is confident: Ỹ depends on whose logits


def _networks():
    torch.manual_seed(0)
    old = build_network(NetworkConfig(init_filters=FILTERS, out_channels=CLASSES)).eval()
    torch.manual_seed(1)  # a current model that has drifted far from the previous one
    return old, build_network(NetworkConfig(init_filters=FILTERS, out_channels=CLASSES)).eval()


def _patch() -> PatchBatch:
    labels = torch.zeros(2, 32, 32, 32, dtype=torch.long)
    labels[:, 4:20, 4:20, 4:20] = 1
    return PatchBatch(torch.randn(2, 1, 32, 32, 32, generator=torch.Generator().manual_seed(2)), labels)


def _buffer(seed: int) -> ReplayBuffer:
    generator = torch.Generator().manual_seed(seed)
    classes = torch.arange(CLASSES).repeat_interleave(12)
    return ReplayBuffer(torch.randn(classes.numel(), BOTTLENECK, generator=generator) + classes[:, None].float(), classes)


def _strategy(buffer: ReplayBuffer | None, **settings) -> DualAlignment:
    torch.manual_seed(3)
    return DualAlignment(_context(buffer), DualAlignmentSettings(**settings))


def _context(buffer: ReplayBuffer | None) -> DomainContext:
    return DomainContext(num_classes=CLASSES, labelled=[1], bottleneck_channels=BOTTLENECK, feature_channels=FILTERS, buffer=buffer)


def test_the_previous_bottleneck_and_the_targets_come_from_the_frozen_previous_model():
    old, current = _networks()
    patch = _patch()
    with torch.no_grad():
        batch = make_domain_batch(patch, current, old, THRESHOLDS, UNLABELLED)
        old_logits, features, stages = old.forward_with_stages(patch.images)
        old_bottleneck, old_features = stages[-1], features
        new_logits, features, stages = current.forward_with_stages(patch.images)
        new_bottleneck, new_features = stages[-1], features
    torch.testing.assert_close(batch.bottleneck_old, old_bottleneck)
    torch.testing.assert_close(batch.bottleneck_new, new_bottleneck)
    torch.testing.assert_close(batch.features_old, old_features)
    torch.testing.assert_close(batch.features_new, new_features)
    assert batch.features_new.shape == (2, FILTERS, 32, 32, 32)
    assert batch.bottleneck_new.shape == (2, BOTTLENECK, 4, 4, 4) and not torch.allclose(old_bottleneck, new_bottleneck)
    expected = partial_label_targets(patch.labels, old_logits, THRESHOLDS, UNLABELLED)
    assert torch.equal(batch.targets, expected) and not torch.equal(expected, partial_label_targets(patch.labels, new_logits, THRESHOLDS, UNLABELLED))


@pytest.mark.parametrize(("cna_features", "new", "old", "channels"), [
    ("bottleneck", "bottleneck_new", "bottleneck_old", BOTTLENECK),
    ("decoder", "features_new", "features_old", FILTERS),
])
def test_cna_aligns_with_the_previous_models_features_not_with_its_own(cna_features, new, old, channels):
    previous, current = _networks()
    strategy = _strategy(None, cna_features=cna_features)
    with torch.no_grad():
        batch = make_domain_batch(_patch(), current, previous, THRESHOLDS, UNLABELLED)
        torch.manual_seed(4)
        cna = strategy.cna(batch)
        torch.manual_seed(4)
        mine, theirs = pair_positions(getattr(batch, new), getattr(batch, old), strategy.settings.aligned_rows)
        expected = HsicAlignment()(strategy.blocks["cna"](mine), theirs)
        torch.manual_seed(4)
        against_itself = strategy.cna(dataclasses.replace(batch, **{old: getattr(batch, new)}))
    torch.testing.assert_close(cna, expected)
    assert strategy.blocks["cna"].projection.in_features == channels
    assert float(cna) > float(against_itself) + 0.05


def test_dual_alignment_adds_the_previous_models_kd_only_when_weighted():
    from ciss_engine.losses import UnbiasedKnowledgeDistillation

    old, current = _networks()
    with torch.no_grad():
        batch = make_domain_batch(_patch(), current, old, THRESHOLDS, UNLABELLED)
    assert "kd" not in _strategy(None, lambda_kd=0.0).weighted_terms(batch)
    strategy = _strategy(None, lambda_kd=3.0, kd_voxels="all")
    kd = strategy.weighted_terms(batch)["kd"]
    torch.testing.assert_close(kd, 3.0 * UnbiasedKnowledgeDistillation()(batch.logits_new, batch.logits_old))
    assert not torch.allclose(kd, strategy.weighted_terms(dataclasses.replace(batch, logits_old=batch.logits_new))["kd"])


def test_teacher_correct_kd_distils_only_where_the_previous_model_predicts_the_steps_label():
    """kd_voxels=teacher_correct: the KD's mean runs over the voxels whose Ỹ the previous model predicts, and the
    ignored ones; it reads the previous model's argmax against Ỹ, not the current model's."""
    from ciss_engine.losses import UnbiasedKnowledgeDistillation

    old, current = _networks()
    patch = _patch()
    with torch.no_grad():
        batch = make_domain_batch(patch, current, old, THRESHOLDS, UNLABELLED)
    batch = dataclasses.replace(batch, targets=patch.labels.clone())  # organ 1 labelled; the previous model errs on part of it
    batch.targets[:, 28:, 28:, 28:] = IGNORE_INDEX
    ignored = batch.targets == IGNORE_INDEX
    voxels = (batch.logits_old.argmax(1) == batch.targets) | ignored
    assert 0 < int((~voxels).sum()), "the previous model must err somewhere for the mask to matter"
    strategy = _strategy(None, lambda_kd=3.0, kd_voxels="teacher_correct")
    kd = strategy.weighted_terms(batch)["kd"]
    torch.testing.assert_close(kd, 3.0 * UnbiasedKnowledgeDistillation()(batch.logits_new, batch.logits_old, voxels))
    assert not torch.allclose(kd, _strategy(None, lambda_kd=3.0, kd_voxels="all").weighted_terms(batch)["kd"])
    assert not torch.allclose(kd, 3.0 * UnbiasedKnowledgeDistillation()(batch.logits_new, batch.logits_old, voxels & ~ignored))
    by_current = (batch.logits_new.argmax(1) == batch.targets) | (batch.targets == IGNORE_INDEX)
    assert not torch.equal(by_current, voxels)
    assert not torch.allclose(kd, 3.0 * UnbiasedKnowledgeDistillation()(batch.logits_new, batch.logits_old, by_current))


def test_teacher_correct_cna_pairs_only_the_voxels_where_the_previous_model_predicts_the_steps_label():
    """cna_voxels=teacher_correct: CNA draws its pairs from the voxels of kd_voxels=teacher_correct (the previous
    model's argmax against Ỹ, and the ignored voxels), so the current features elsewhere do not enter it."""
    old, current = _networks()
    patch = _patch()
    with torch.no_grad():
        batch = make_domain_batch(patch, current, old, THRESHOLDS, UNLABELLED)
    batch = dataclasses.replace(batch, targets=patch.labels.clone())
    batch.targets[:, 28:, 28:, 28:] = IGNORE_INDEX
    ignored = batch.targets == IGNORE_INDEX
    voxels = (batch.logits_old.argmax(1) == batch.targets) | ignored
    by_current = (batch.logits_new.argmax(1) == batch.targets) | ignored
    assert 0 < int((~voxels).sum()) and not torch.equal(by_current, voxels)
    strategy = _strategy(None, cna_voxels="teacher_correct")

    def cna_with(where: torch.Tensor | None, features_new: torch.Tensor = batch.features_new) -> torch.Tensor:
        torch.manual_seed(4)
        mine, theirs = pair_positions(features_new, batch.features_old, strategy.settings.aligned_rows, where)
        return HsicAlignment()(strategy.blocks["cna"](mine), theirs)

    with torch.no_grad():
        torch.manual_seed(4)
        cna = strategy.cna(batch)
        torch.testing.assert_close(cna, cna_with(voxels))
        for look_alike in (None, by_current, voxels & ~ignored):
            assert not torch.allclose(cna, cna_with(look_alike))
        # The current model's features where the previous model errs do not enter the term; with every voxel they do.
        elsewhere = torch.where((~voxels)[:, None], torch.randn_like(batch.features_new), batch.features_new)
        torch.manual_seed(4)
        torch.testing.assert_close(strategy.cna(dataclasses.replace(batch, features_new=elsewhere)), cna)
        every_voxel = _strategy(None, cna_voxels="all")
        torch.manual_seed(4)
        before = every_voxel.cna(batch)
        torch.manual_seed(4)
        assert not torch.allclose(every_voxel.cna(dataclasses.replace(batch, features_new=elsewhere)), before)
        # Nothing where the previous model is right: no pairs to align, a zero term that still reaches the log.
        nowhere = dataclasses.replace(batch, targets=torch.where(voxels, (batch.logits_old.argmax(1) + 1) % CLASSES, batch.targets))
        assert not teacher_correct(nowhere).any() and float(strategy.cna(nowhere)) == 0.0


def test_cra_pairs_the_current_bottleneck_with_the_buffer_class_by_class():
    old, current = _networks()
    buffer = _buffer(5)
    strategy = _strategy(buffer)
    with torch.no_grad():
        batch = make_domain_batch(_patch(), current, old, THRESHOLDS, UNLABELLED)
        classes = bottleneck_classes(batch.targets, batch.bottleneck_new)
        torch.manual_seed(6)
        cra = strategy.cra(batch)
        torch.manual_seed(6)
        mine, buffered = pair_by_class(batch.bottleneck_new, classes, buffer, strategy.settings.aligned_rows)
        expected = HsicAlignment()(strategy.blocks["cra"](mine), buffered)
        torch.manual_seed(6)
        as_buffer = ReplayBuffer(batch.bottleneck_new.movedim(1, -1).reshape(-1, BOTTLENECK), classes.reshape(-1))
        mine, from_current = pair_by_class(batch.bottleneck_new, classes, as_buffer, strategy.settings.aligned_rows)
        with_current_features = HsicAlignment()(strategy.blocks["cra"](mine), from_current)
    torch.testing.assert_close(cra, expected)
    assert not torch.isclose(cra, with_current_features, atol=1e-3)
    for class_id in torch.unique(classes).tolist():  # row i of both sides has the same class
        assert class_id in buffer.classes.tolist()


def test_cra_is_zero_without_a_buffer_or_with_one_class_and_the_terms_are_weighted():
    old, current = _networks()
    with torch.no_grad():
        batch = make_domain_batch(_patch(), current, old, THRESHOLDS, UNLABELLED)
    assert float(_strategy(None).cra(batch)) == 0.0
    only_background = ReplayBuffer(torch.randn(5, BOTTLENECK), torch.zeros(5, dtype=torch.long))
    assert float(_strategy(only_background).cra(batch)) == 0.0
    strategy = _strategy(_buffer(5))
    terms = strategy.weighted_terms(make_domain_batch(_patch(), current, old, THRESHOLDS, UNLABELLED))
    assert set(terms) == {"ce", "dice", "cna", "cra", "kd"} and all(t.requires_grad for t in terms.values())


def test_the_feature_mappings_are_not_part_of_the_segmentation_network():
    _, current = _networks()
    strategy = _strategy(_buffer(5))
    exported = set(current.state_dict())
    assert not any(key.startswith(("cna", "cra")) for key in exported)
    assert sum(p.numel() for p in strategy.blocks.parameters()) > 0


@pytest.mark.parametrize(("name", "value"), [("embedding_size", 0), ("buffer_per_class", 0), ("aligned_rows", 2),
                                            ("new_class_ce", 0.3), ("new_class_lr_scale", 20.0),
                                            ("new_organ_weight", 3.0)])  # a domain step adds no organ
def test_settings_out_of_range_are_refused(name, value):
    from ciss_engine.errors import InputError

    with pytest.raises(InputError, match=name):
        DualAlignment(_context(None), DualAlignmentSettings(**{name: value}))


def test_partial_label_targets_ignore_unconfident_organs_without_labels():
    labels = torch.tensor([[0, 0, 0, 1]])
    logits = torch.tensor([[[5.0, 0.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 0.3, 9.0]]])  # argmax 0, 1, 2 (unsure), 2
    thresholds = torch.tensor([0.5, 0.5])
    # background stays 0; organ 1 has labels: the old model's 1 is background here; organ 2 unsure: ignored; a label wins
    assert partial_label_targets(labels, logits, thresholds, UNLABELLED).tolist() == [[0, 0, 255, 1]]
    confident = torch.tensor([[[0.0], [0.0], [9.0]]])
    assert partial_label_targets(torch.zeros(1, 1, dtype=torch.long), confident, thresholds, UNLABELLED).tolist() == [[2]]


def test_the_domain_distillation_baseline_distils_the_previous_models_logits():
    from ciss_engine.api.settings import MibSettings
    from ciss_engine.losses import UnbiasedKnowledgeDistillation
    from ciss_engine.strategies.domain import DomainDistillation

    old, current = _networks()
    patch = _patch()
    with torch.no_grad():
        batch = make_domain_batch(patch, current, old, THRESHOLDS, UNLABELLED)
        torch.testing.assert_close(batch.logits_old, old(patch.images))
    strategy = DomainDistillation(_context(None), MibSettings(lambda_kd=2.0))
    kd = strategy.weighted_terms(batch)["kd"]
    torch.testing.assert_close(kd, 2.0 * UnbiasedKnowledgeDistillation()(batch.logits_new, batch.logits_old))
    # Against the current model's own logits the KD is its entropy: not what the previous model says.
    assert not torch.allclose(kd, strategy.weighted_terms(dataclasses.replace(batch, logits_old=batch.logits_new))["kd"])
