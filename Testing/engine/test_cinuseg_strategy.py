"""CiNuSeg's wiring (strategies/cinuseg.py): each term reads the input it should, and fails when that input is
swapped for its look-alike: the old model's stages and logits, Ỹ for the anchors and the trade-off, the new
labels for the supervised loss."""
import dataclasses

import torch

from ciss_engine.api.settings import CinusegSettings
from ciss_engine.losses import UnbiasedCrossEntropy, unbiased_distillation_terms
from ciss_engine.network import NetworkConfig, build_network, grow_classifier
from ciss_engine.prototypes import FeaturePrototypes
from ciss_engine.pseudo_labels import region_masks
from ciss_engine.strategies.base import StepBatch, StepContext
from ciss_engine.strategies.cinuseg import ClassIncrementalNucleiSegmentation
from ciss_engine.training.incremental import make_step_batch
from ciss_engine.training.sampler import PatchBatch

NUM_OLD, NUM_NEW, CHANNELS = 2, 1, 8
NEW = NUM_OLD + 1


def _strategy(**settings) -> ClassIncrementalNucleiSegmentation:
    context = StepContext(NUM_OLD, NUM_NEW, FeaturePrototypes.empty(1 + NUM_OLD, CHANNELS), FeaturePrototypes.empty(1 + NUM_OLD + NUM_NEW, CHANNELS))
    return ClassIncrementalNucleiSegmentation(context, CinusegSettings(**settings))


def _batch(labels: torch.Tensor, pseudo: torch.Tensor, seed: int = 0) -> StepBatch:
    """Random logits and stages of both models on (B, 4, 4, 4) voxels, with the given labels and Ỹ."""
    generator = torch.Generator().manual_seed(seed)
    batch_size = labels.shape[0]

    def random(*shape: int) -> torch.Tensor:
        return torch.randn(batch_size, *shape, generator=generator)

    old_region, current_region = region_masks(pseudo, NUM_OLD)
    return StepBatch(
        labels=labels, logits_new=random(1 + NUM_OLD + NUM_NEW, 4, 4, 4), features_new=random(CHANNELS, 4, 4, 4),
        logits_old=random(1 + NUM_OLD, 4, 4, 4), features_old=random(CHANNELS, 4, 4, 4), pseudo_labels=pseudo,
        old_region=old_region, current_region=current_region,
        stages_new=[random(CHANNELS, 4, 4, 4), random(2 * CHANNELS, 2, 2, 2)], stages_old=[random(CHANNELS, 4, 4, 4), random(2 * CHANNELS, 2, 2, 2)],
    )


def _labels_and_pseudo(new_share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One patch: the first ``new_share`` of its voxels new organ in both, the next quarter old organ 1 in Ỹ only."""
    voxels = 64
    labels = torch.zeros(voxels, dtype=torch.long)
    labels[: int(new_share * voxels)] = NEW
    pseudo = labels.clone()
    pseudo[int(new_share * voxels) : int(new_share * voxels) + voxels // 4] = 1
    return labels.reshape(1, 4, 4, 4), pseudo.reshape(1, 4, 4, 4)


def test_the_step_batch_carries_each_models_own_encoder_stages():
    torch.manual_seed(0)
    old = build_network(NetworkConfig(init_filters=CHANNELS, out_channels=1 + NUM_OLD)).eval()
    torch.manual_seed(1)
    grown = grow_classifier(build_network(NetworkConfig(init_filters=CHANNELS, out_channels=1 + NUM_OLD)), NUM_NEW).eval()
    images = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    patch = PatchBatch(images, torch.zeros(2, 16, 16, 16, dtype=torch.long), maps=torch.zeros(2, 1 + NUM_OLD + CHANNELS, 16, 16, 16))
    with torch.no_grad():
        batch = make_step_batch(patch, grown, old, _strategy(), torch.full((NUM_OLD,), 10.0))
        old_logits, _, old_stages = old.forward_with_stages(images)
        _, _, grown_stages = grown.forward_with_stages(images)
    assert len(batch.stages_old) == len(old_stages) == 4
    for mine, theirs, grown_stage in zip(batch.stages_old, old_stages, grown_stages):
        torch.testing.assert_close(mine, theirs)
        assert not torch.allclose(theirs, grown_stage)
    for mine, theirs in zip(batch.stages_new, grown_stages):
        torch.testing.assert_close(mine, theirs)
    # The old model ran on the patch: the cached maps (zeros here) are not its outputs.
    torch.testing.assert_close(batch.logits_old, old_logits)


def test_the_trade_off_reads_the_pseudo_labels():
    # Ỹ: new 50 %, old 25 %: r = 0.67 < σ = 0.7, no rebalancing; the new labels alone would say r = 1.
    labels, pseudo = _labels_and_pseudo(0.5)
    terms = _strategy().supervised_terms(_batch(labels, pseudo))
    flat = _strategy(trade_off_old_scale=1.0, trade_off_new_scale=1.0).supervised_terms(_batch(labels, pseudo))
    for name in terms:
        torch.testing.assert_close(terms[name], flat[name])
    # Ỹ: new 75 %, old 25 %: r = 0.75 > σ: retention × α_o, learning × α_n.
    labels, pseudo = _labels_and_pseudo(0.75)
    terms = _strategy().supervised_terms(_batch(labels, pseudo))
    flat = _strategy(trade_off_old_scale=1.0, trade_off_new_scale=1.0).supervised_terms(_batch(labels, pseudo))
    for name, scale in {"unbiased_kd": 10.0, "anchor_consistency": 10.0, "unbiased_ce": 0.5, "drr": 0.5}.items():
        torch.testing.assert_close(terms[name], scale * flat[name])


def test_retention_reads_the_old_models_logits_and_stages_and_the_anchors_read_the_pseudo_labels():
    labels, pseudo = _labels_and_pseudo(0.25)
    batch = _batch(labels, pseudo)
    terms = _strategy(lambda_kd=1.0).supervised_terms(batch)
    expected_kd = unbiased_distillation_terms(batch.logits_new, batch.logits_old, NUM_OLD).mean()
    torch.testing.assert_close(terms["unbiased_kd"], expected_kd)
    assert float(terms["anchor_consistency"]) > 0.1
    # The old model's stages swapped for the current ones: nothing left to hold.
    same = dataclasses.replace(batch, stages_old=batch.stages_new)
    assert float(_strategy().supervised_terms(same)["anchor_consistency"]) < 1e-6
    # Anchors on the new labels (no old organ in them) instead of Ỹ: nothing to hold either.
    on_labels = dataclasses.replace(batch, pseudo_labels=batch.labels)
    assert float(_strategy().supervised_terms(on_labels)["anchor_consistency"]) == 0.0


def test_the_supervised_loss_reads_the_new_labels_and_weights_the_old_models_hard_negatives():
    labels, pseudo = _labels_and_pseudo(0.25)
    batch = _batch(labels, pseudo)
    plain = _strategy(hard_negative_weight=0.0).supervised_terms(batch)["unbiased_ce"]
    torch.testing.assert_close(plain, UnbiasedCrossEntropy(NUM_OLD)(batch.logits_new, batch.labels))
    # The old model calls every new-organ voxel spleen with p ≈ 1: all of them are hard negatives.
    sure = batch.logits_old.clone()
    sure[:, 1] = 20.0
    hard = dataclasses.replace(batch, logits_old=sure)
    per_voxel, valid = UnbiasedCrossEntropy(NUM_OLD).voxel_losses(batch.logits_new, batch.labels)
    weighted = (per_voxel * (1 + 0.1 * (batch.labels == NEW))).sum() / valid.sum()
    torch.testing.assert_close(_strategy().supervised_terms(hard)["unbiased_ce"], weighted)
    # The same certainty in the CURRENT model's old channels, with an old model sure of background, makes none.
    current_sure, background = batch.logits_new.clone(), batch.logits_old.clone()
    current_sure[:, 1] = 20.0
    background[:, 0] = 20.0
    not_hard = dataclasses.replace(batch, logits_new=current_sure, logits_old=background)
    torch.testing.assert_close(_strategy().supervised_terms(not_hard)["unbiased_ce"], _strategy(hard_negative_weight=0.0).supervised_terms(not_hard)["unbiased_ce"])


def test_every_strategy_can_weigh_the_new_organs_own_ce_over_their_voxels():
    """``new_class_ce`` (StrategySettings): FGL of the new labels, for any strategy; off by default."""
    from ciss_engine.api.settings import MibSettings
    from ciss_engine.losses.representation_regularisation import new_organ_ce
    from ciss_engine.strategies.mib import ModelingTheBackground

    labels, pseudo = _labels_and_pseudo(0.25)
    batch = _batch(labels, pseudo)
    context = StepContext(NUM_OLD, NUM_NEW, FeaturePrototypes.empty(1 + NUM_OLD, CHANNELS), FeaturePrototypes.empty(1 + NUM_OLD + NUM_NEW, CHANNELS))
    assert "ce_new" not in ModelingTheBackground(context, MibSettings()).weighted_terms(batch)
    terms = ModelingTheBackground(context, MibSettings(new_class_ce=2.0)).weighted_terms(batch)
    expected = new_organ_ce(batch.logits_new, batch.labels, NUM_OLD).mean()
    torch.testing.assert_close(terms["ce_new"], 2.0 * expected)
    # The pseudo-labels' old organs are not new organs: the term reads the step's labels.
    assert not torch.allclose(expected, new_organ_ce(batch.logits_new, batch.pseudo_labels, 0).mean())


def test_cinuseg_refuses_the_new_organs_ce_its_drr_already_holds():
    """CiNuSeg's FGL is ``new_class_ce``'s term: both would weigh −log p over the new organs' voxels twice."""
    import pytest

    from ciss_engine.errors import InputError

    with pytest.raises(InputError, match="already holds") as raised:
        _strategy(new_class_ce=1.0)
    assert "lambda_drr" in raised.value.hint
    _strategy(new_class_ce=0.0)
