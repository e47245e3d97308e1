"""A domain step (``ciss adapt``): the bundle's own organs, adapted to a new site's CTs.

Labels may cover every organ of the bundle or only some; the frozen parent model pseudo-labels the others where
it is confident (pseudo_labels.partial_label_targets). The result is a new version with the same registry,
published only if the organs without labels still agree with the parent on the step's CTs (the forgetting
guard) or the user accepts the drop. With ``dual_alignment`` the version also stores the replay buffer.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..api.bundle_record import STATUS_PUBLISHED
from ..api.settings import DEFAULT_DOMAIN_STRATEGY, parse_settings_or_raise
from ..bundle import Bundle, BundleVersion, write_version
from ..bundle_lock import bundle_lock
from ..cancellation import CancelToken
from ..device import seed_run
from ..errors import BundleError, InputError
from ..events import EventSink
from ..forgetting_guard import GuardResult, as_shown, check_forgetting, organs_known_absent, pooled_dsc
from ..inference import load_network
from ..network import SegmentationNetwork
from ..postprocessing import postprocessed_labels
from ..preprocessing import PreprocessingConfig
from ..prototypes import FeaturePrototypes
from ..pseudo_labels import partial_label_targets
from ..registry import ClassRegistry
from ..replay_buffer import ReplayBuffer
from ..strategies import DOMAIN_STRATEGIES
from ..strategies.base import total_loss
from ..strategies.domain import DomainBatch, DomainContext, DomainStrategy
from .augmentation import organ_contrast_for, share_that_ran
from .bottleneck_pass import bottleneck_rows
from .cases import PreparedCase, case_sha256, organs_per_case, prepare_cases
from .checkpoint import ExtraState
from .gradient_shares import ShareRecorder
from .loop import LoopResult, run_training_loop
from .loop_config import ADAPT_APPEARANCE_REPLAY, ADAPT_ORGAN_CONTRAST
from .prototype_pass import prototypes_and_predictions
from .run_record import run_fingerprint
from .sampler import PatchBatch, PatchSampler
from .site_appearance import APPEARANCE_KEY, organ_medians, recorded_appearances, replay_offsets
from .step_common import StepRequest, finished_step, learn_run_dir, parent_or_raise, publish_or_reject, step_record
from .step_data import analyse_step_cases


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdaptRequest(StepRequest):
    """Everything ``ciss adapt`` needs, keyword-built."""

    organs: Sequence[tuple[str, int]] | None = None  # labelled organ, its value in the label files; None: every organ at its id
    strategy: str = DEFAULT_DOMAIN_STRATEGY
    # Share of patches whose labelled enhancing organs get their own intensity offsets (augmentation.RandOrganContrastd):
    # a domain step's labels name the organs it trains, as a base's do (RESULTS.md (ab): the earlier sites kept).
    organ_contrast: float = ADAPT_ORGAN_CONTRAST
    # Of the organ-contrast patches, the share whose organs show an earlier site's recorded intensities (site_appearance.py).
    appearance_replay: float = ADAPT_APPEARANCE_REPLAY


@dataclasses.dataclass(frozen=True)
class AdaptResult:
    version: BundleVersion
    guard: GuardResult
    labelled_dsc: dict[str, dict[str, float | None]]  # organ → {"before": parent's DSC, "after": the new version's}
    replay_buffer: dict[str, int]  # vectors per class stored in the version (empty: none)


def labelled_organs_or_raise(registry: ClassRegistry, organs: Sequence[tuple[str, int]] | None) -> dict[int, int]:
    """Label value → class id of the organs this step has labels for; only the bundle's own organs."""
    if organs is None:
        return {organ.label: organ.label for organ in registry.organs}
    unknown = [name for name, _ in organs if name not in registry]
    if unknown:
        raise InputError(f"organ(s) {', '.join(unknown)} are not in the bundle", f"ciss adapt labels the bundle's own organs ({', '.join(registry.names)}); "
                         "add a new organ with `ciss learn`")
    return {value: registry.by_name(name).label for name, value in organs}


def _strategy_type_or_raise(name: str) -> type[DomainStrategy]:
    if name not in DOMAIN_STRATEGIES:
        raise InputError(f"strategy {name!r} is not a domain strategy", f"ciss adapt takes {' or '.join(DOMAIN_STRATEGIES)}; `ciss learn` runs the class-incremental ones")
    return DOMAIN_STRATEGIES[name]


def _fingerprint(request: AdaptRequest, parent_version: str | None, data: list[str]) -> str:
    return run_fingerprint({
        "kind": "domain", "parent": parent_version, "organs": None if request.organs is None else [list(o) for o in request.organs],
        "strategy": request.resolved_strategy(), "loop": dataclasses.asdict(request.loop),
        "batch_size": request.batch_size, "seed": request.seed, "fixed_threshold": request.fixed_threshold, "organ_contrast": request.organ_contrast,
        "appearance_replay": request.appearance_replay, "data": data,
    })


def make_domain_batch(
    batch: PatchBatch, network: SegmentationNetwork, old_network: SegmentationNetwork, thresholds: torch.Tensor, unlabelled: torch.Tensor,
) -> DomainBatch:
    """One iteration's inputs to the losses: the current model's logits and bottleneck, the FROZEN previous
    model's bottleneck on the same patch, and Ỹ from the previous model's logits."""
    with torch.no_grad():
        logits_old, features_old, stages_old = old_network.forward_with_stages(batch.images)
    targets = partial_label_targets(batch.labels, logits_old.float(), thresholds.to(batch.labels.device), unlabelled)
    logits_new, features_new, stages_new = network.forward_with_stages(batch.images)
    return DomainBatch(targets=targets, logits_new=logits_new.float(), bottleneck_new=stages_new[-1].float(), bottleneck_old=stages_old[-1].float(),
                       logits_old=logits_old.float(), features_new=features_new.float(), features_old=features_old.float())


def draw_replay_buffer(
    network: SegmentationNetwork, cases: Sequence[PreparedCase], *, per_class: int, seed: int, patch_size: tuple[int, int, int], device: torch.device, sink: EventSink,
) -> ReplayBuffer:
    """At most ``per_class`` bottleneck vectors of each class of Ỹ (cases' ``sampling_label``), drawn by ``seed``."""
    vectors, classes = bottleneck_rows(network, [(c.image, c.sampling_label) for c in cases], patch_size=patch_size, device=device, sink=sink)
    return ReplayBuffer.drawn(vectors, classes, per_class=per_class, seed=seed)


def adapt_step(request: AdaptRequest, *, device: torch.device, sink: EventSink, cancel: CancelToken) -> AdaptResult:
    """Run one domain step; the bundle's writer lock is held throughout (a second writer fails at once)."""
    bundle = Bundle.open_or_raise(request.bundle)
    with bundle_lock(bundle.root, "adapt", sink=sink):
        return _adapt_step_locked(request, device=device, sink=sink, cancel=cancel)


def _result_of(version: BundleVersion, guard: GuardResult) -> AdaptResult:
    step = version.history[-1]
    return AdaptResult(version=version, guard=guard, labelled_dsc=step["labelled_dsc"], replay_buffer=step["replay_buffer"])


def _adapt_step_locked(request: AdaptRequest, *, device: torch.device, sink: EventSink, cancel: CancelToken) -> AdaptResult:
    strategy_type = _strategy_type_or_raise(request.strategy)
    settings = parse_settings_or_raise(request.strategy, request.strategy_settings)
    bundle = Bundle.open_or_raise(request.bundle)
    if request.resume:
        data = [case_sha256(image, label) for image, label in zip(request.images, request.labels)]
        finished = finished_step(bundle, lambda parent: _fingerprint(request, parent, data), sink, action="Adapt")
        if finished is not None:
            return _result_of(*finished)
    parent = parent_or_raise(bundle, request.parent_version, action="adapt")
    registry = parent.registry
    value_to_class = labelled_organs_or_raise(registry, request.organs)
    old_network = load_network(parent, device).requires_grad_(False)
    if not isinstance(old_network, SegmentationNetwork):
        raise BundleError(f"version {parent.version} holds a {parent.settings.network['name']} network; ciss adapt aligns SegResNet bottlenecks",
                          "adapt a bundle trained with `ciss train`, or fine-tune the imported model with its own tool")
    preprocessing = PreprocessingConfig.from_json(parent.settings.preprocessing)
    cases = prepare_cases(request.images, request.labels, value_to_class=value_to_class, other_labels="error", config=preprocessing, sink=sink)
    fingerprint = _fingerprint(request, parent.version, [c.sha256 for c in cases])
    labelled = sorted(set(value_to_class.values()))
    unlabelled = torch.ones(registry.num_classes, dtype=torch.bool)
    unlabelled[[0, *labelled]] = False
    targets = functools.partial(partial_label_targets, unlabelled=unlabelled)
    step_data = analyse_step_cases(old_network, cases, num_old=len(registry), num_new=0, patch_size=preprocessing.patch_size, device=device,
                                   fixed_threshold=request.fixed_threshold, sink=sink, targets=targets)
    buffer = None
    if strategy_type.uses_replay_buffer:
        buffer = parent.load_replay_buffer()
        source = f"version {parent.version}'s"
        if buffer is None:
            source = "drawn from the parent model on this step's CTs:"
            buffer = draw_replay_buffer(old_network, cases, per_class=settings.buffer_per_class, seed=request.seed,  # type: ignore[attr-defined]
                                        patch_size=preprocessing.patch_size, device=device, sink=sink)
        sink.log(f"replay buffer {source} {buffer.vectors.shape[0]} bottleneck vectors ({buffer.class_sizes(['background', *registry.names])})")
    appearance = organ_medians(cases, registry)
    # Replay is part of organ contrast, which is part of the augmentation: without either no patch would show it.
    replaying = request.appearance_replay > 0 and request.organ_contrast > 0 and request.loop.augmentation
    recorded = replay_offsets(recorded_appearances(parent.history), appearance) if replaying else ()
    if replaying:
        sink.log(f"appearance replay: {request.appearance_replay:g} of the organ-contrast patches show one of {len(recorded)} earlier site(s)' organ intensities"
                 if recorded else "appearance replay: no earlier site's organ intensities in the lineage for this step's organs (a bundle from before "
                 "they were recorded, an imported model, or sites that labelled other organs); organ contrast draws random offsets")
    seed_run(request.seed)
    network = copy.deepcopy(old_network).requires_grad_(True)
    strategy = strategy_type(DomainContext(num_classes=registry.num_classes, labelled=labelled, bottleneck_channels=_bottleneck_channels(network),
                                             feature_channels=network.feature_channels, buffer=buffer), settings)
    sampler = PatchSampler(cases, num_classes=registry.num_classes, patch_size=preprocessing.patch_size, batch_size=request.batch_size, seed=request.seed,
                           augment=request.loop.augmentation,
                           organ_contrast=organ_contrast_for(request.organ_contrast, registry, labelled, replay=request.appearance_replay, recorded=recorded),
                           intensities=preprocessing.model_intensities(), background_share=settings.background_share,
                           background_in_body=settings.background_in_body)

    shares = ShareRecorder(network, sink, stage="adapt")

    def loss_fn(batch: PatchBatch, iteration: int) -> tuple[torch.Tensor, dict[str, float]]:
        terms = strategy.weighted_terms(make_domain_batch(batch, network, old_network, step_data.thresholds, unlabelled))
        shares.observe(terms, iteration)
        return total_loss(terms)

    names = {organ.label: organ.name for organ in registry.organs}
    sink.log(f"adapting {', '.join(names[c] for c in labelled)} (labelled) and {len(registry) - len(labelled)} organ(s) without labels "
             f"to {len(cases)} CT(s) with {request.strategy}, {request.loop.iterations} iterations on {device}; parent version {parent.version}")
    # The feature mappings train with the network and are checkpointed with it, but only the network is exported.
    result = run_training_loop(
        network=nn.ModuleDict({"network": network, "blocks": strategy.blocks}), loss_fn=loss_fn, sampler=sampler, config=request.loop, device=device,
        work_dir=learn_run_dir(bundle.root, fingerprint), fingerprint=fingerprint, resume=request.resume, sink=sink, cancel=cancel, stage="adapt",
        extra_state=ExtraState(save=shares.average.to_tensors, restore=shares.average.restore), patch_network=network,
    )
    fresh_prototypes, new_predictions = prototypes_and_predictions(network, [(c.image, c.sampling_label) for c in cases], num_classes=registry.num_classes,
                                                                   patch_size=preprocessing.patch_size, device=device, sink=sink)
    labels = [c.label.as_tensor()[0] for c in cases]
    is_labelled = [torch.isin(label, torch.tensor(labelled, dtype=label.dtype)) for label in labels]
    without_labels = [(o.label, o.name) for o in registry.organs if o.label not in labelled]
    one_piece = postprocessed_labels(parent)
    guard = check_forgetting(step_data.old_predictions, new_predictions, without_labels, threshold=request.guard_threshold, new_organ_masks=is_labelled,
                             one_piece=one_piece, known_absent=organs_known_absent(parent.history, [c.sha256 for c in cases], without_labels))
    # The labelled organs' DSC of what the user sees, as the guard judges it.
    organs = [(c, names[c]) for c in labelled]
    before, after = (pooled_dsc(labels, as_shown(predictions, one_piece), organs) for predictions in (step_data.old_predictions, new_predictions))
    labelled_dsc = {name: {"before": before[name], "after": after[name]} for _, name in organs}
    sink.log("labelled organs, DSC before → after: " + ", ".join(f"{n} {d['before']} → {d['after']}" for n, d in labelled_dsc.items()))
    stored_buffer = None
    if buffer is not None:
        drawn = draw_replay_buffer(network, cases, per_class=settings.buffer_per_class, seed=request.seed,  # type: ignore[attr-defined]
                                   patch_size=preprocessing.patch_size, device=device, sink=sink)
        stored_buffer = buffer.merged_with(drawn, per_class=settings.buffer_per_class, seed=request.seed)  # type: ignore[attr-defined]
    prototypes = _adapted_prototypes(fresh_prototypes, parent)
    version = bundle.next_version()
    written = publish_or_reject(
        bundle_root=bundle.root, version=version, parent_version=parent.version, fingerprint=fingerprint, guard=guard,
        accept_forgetting=request.accept_forgetting, sink=sink, cts=request.images, action="Adapt", write=lambda status: _write_adapt_version(
            request=request, root=bundle.root, version=version, parent=parent, network=network, prototypes=prototypes,
            thresholds=step_data.thresholds, guard=guard, status=status, result=result, strategy=strategy.describe(), labelled_dsc=labelled_dsc,
            buffer=stored_buffer, cases=cases, gradient_shares=shares.average.mean(), fingerprint=fingerprint,
            appearance=appearance, replayed=recorded,
        ),
    )
    return _result_of(written, guard)


def _bottleneck_channels(network: SegmentationNetwork) -> int:
    """Channels of the coarsest encoder stage: SegResNet doubles its width at each of its downsamplings."""
    return network.config.init_filters * 2 ** (len(network.config.blocks_down) - 1)


def _adapted_prototypes(final: FeaturePrototypes, parent: BundleVersion) -> FeaturePrototypes:
    """``final``, the prototypes of the adapted features on Ỹ, where a class absent from the step's CTs keeps the parent's row."""
    stored = parent.load_prototypes()
    if stored:
        kept = FeaturePrototypes.from_tensors(stored)
        if kept.pre is None:
            final.pre = None  # as in a class-incremental step: no mix of fresh and unknown pre-activation means
        for row in (final.post.counts == 0).nonzero().flatten().tolist():
            final.copy_rows_from(kept, slice(row, row + 1))
    return final


def _write_adapt_version(
    *,
    request: AdaptRequest,
    root: Path,
    version: str,
    parent: BundleVersion,
    network: SegmentationNetwork,
    prototypes: FeaturePrototypes,
    thresholds: torch.Tensor,
    guard: GuardResult,
    status: str,
    result: LoopResult,
    strategy: dict[str, Any],
    labelled_dsc: dict[str, dict[str, float | None]],
    buffer: ReplayBuffer | None,
    cases: Sequence[PreparedCase],
    gradient_shares: dict[str, float],
    fingerprint: str,
    appearance: dict[str, float],
    replayed: Sequence[dict[str, float]],
) -> BundleVersion:
    """The step's version folder: adapted network, prototypes with τ, the buffer, lineage (kind "domain")."""
    buffer_sizes = buffer.class_sizes(["background", *parent.registry.names]) if buffer is not None else {}
    settings, entry = step_record(
        request, parent=parent, version=version, step=parent.settings.step, kind="domain", organs=[], data=[c.sha256 for c in cases],
        organs_per_case=organs_per_case(cases, parent.registry), status=status,
        strategy=strategy, guard=guard, fingerprint=fingerprint, result=result, labelled_organs=list(labelled_dsc),
        gradient_shares=gradient_shares,  # as a class-incremental step's (gradient_shares.py)
        training={"organ_contrast": share_that_ran(request.organ_contrast, request.loop.augmentation),
                  "appearance_replay": request.appearance_replay if replayed else 0.0},
        labelled_dsc=labelled_dsc, replay_buffer=buffer_sizes,
        # The offsets each replayed site gave its organs (model units), for review; this site's own medians for later steps.
        replayed_offsets=list(replayed),
        **{APPEARANCE_KEY: appearance},
    )
    history = parent.history + [entry]
    changelog = {**parent.metadata.get("changelog", {}), version: f"domain step: adapted {', '.join(labelled_dsc) or 'no organ'} to {len(cases)} CT(s) of a new site ({strategy['name']}, {status})"}
    return write_version(
        root, version=version, registry=parent.registry, settings=settings, state_dict=network.state_dict(),
        prototypes={**prototypes.to_tensors(), "entropy_thresholds": thresholds.float()}, history=history, changelog=changelog,
        make_current=status == STATUS_PUBLISHED, replay_buffer=None if buffer is None else buffer.to_tensors(),
    )
