"""A class-incremental step: add organs to a bundle from CTs labelled only for the new organs.

The parent model is frozen and distils what it knows; the chosen strategy combines the losses;
the result becomes a new bundle version, published only if the forgetting guard passes (or the
user accepts the drop). The parent version is never modified.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..api.bundle_record import STATUS_PUBLISHED
from ..api.presets import THOROUGH_ITERATIONS
from ..api.settings import DEFAULT_STRATEGY, StrategySettings, parse_settings_or_raise
from ..bundle import Bundle, BundleVersion, write_version
from ..bundle_lock import bundle_lock
from ..cancellation import CancelToken
from ..device import seed_run
from ..errors import InputError
from ..events import EventSink
from ..forgetting_guard import GuardResult, check_forgetting, organs_known_absent
from ..inference import load_network
from ..network import SegmentationNetwork, grow_classifier
from ..new_organ_fit import OrganFit, new_organ_fit, report_fit
from ..postprocessing import postprocessed_labels
from ..preprocessing import PreprocessingConfig
from ..prototypes import FeaturePrototypes
from ..pseudo_labels import make_pseudo_labels, region_masks
from ..registry import ClassRegistry
from ..strategies import STRATEGIES, StepBatch, StepContext, Strategy
from ..strategies.base import total_loss
from .cases import PreparedCase, case_sha256, organs_per_case, prepare_cases
from .checkpoint import ExtraState
from .gradient_shares import ShareRecorder
from .loop import LoopResult, run_training_loop
from .new_class_rate import scale_new_class_gradients
from .prototype_bootstrap import bootstrap_prototypes, bootstrap_record
from .prototype_pass import prototypes_and_predictions
from .run_record import run_fingerprint
from .sampler import PatchBatch, PatchSampler
from .step_common import StepRequest, finished_step, learn_run_dir, parent_or_raise, publish_or_reject, step_record
from .site_appearance import APPEARANCE_KEY, organ_medians
from .step_data import analyse_step_cases, running_prototype_labels, teacher_map_bytes


@dataclasses.dataclass(frozen=True, kw_only=True)
class LearnRequest(StepRequest):
    """Everything ``ciss learn`` needs, keyword-built."""

    organs: Sequence[tuple[str, int, tuple[int, int, int] | None]]  # name, value in the label files, colour
    strategy: str = DEFAULT_STRATEGY


def _fingerprint(request: LearnRequest, parent_version: str | None, data: list[str]) -> str:
    settings = {
        "parent": parent_version,
        "organs": [list(o[:2]) for o in request.organs],
        "strategy": request.resolved_strategy(),
        "loop": dataclasses.asdict(request.loop),
        "batch_size": request.batch_size,
        "seed": request.seed,
        "fixed_threshold": request.fixed_threshold,
        "data": data,
    }
    return run_fingerprint(settings)


# The cached teacher may take at most this share of the memory available when the step starts.
TEACHER_MEMORY_SHARE = 0.25


def _teacher_is_cached(strategy: type[Strategy], choice: str, needed_bytes: int, sink: EventSink) -> bool:
    """``cached``/``online`` as asked; ``auto`` caches when the maps take at most a quarter of the free memory.
    A strategy that reads the old model's encoder stages runs it on every patch: the cache holds no stages."""
    if not strategy.needs_old_model or strategy.needs_encoder_stages:
        return False
    if choice != "auto":
        return choice == "cached"
    import psutil

    available = psutil.virtual_memory().available
    if needed_bytes <= TEACHER_MEMORY_SHARE * available:
        return True
    sink.log(f"the old model's maps would take {needed_bytes / 2**20:.0f} MB of {available / 2**20:.0f} MB free: running it on every patch instead")
    return False


def old_model_outputs(batch: PatchBatch, old_network: SegmentationNetwork, num_old: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen old model's logits (1+|O| channels) and features on the patch, float32: cropped from
    the cached teacher when the batch carries its maps, else computed now."""
    if batch.maps is not None:
        return batch.maps[:, : 1 + num_old].float(), batch.maps[:, 1 + num_old :].float()
    with torch.no_grad():
        logits_old, features_old = old_network.forward_with_features(batch.images)
    return logits_old.float(), features_old.float()


def make_step_batch(
    batch: PatchBatch, network: SegmentationNetwork, old_network: SegmentationNetwork, strategy: Strategy, thresholds: torch.Tensor,
) -> StepBatch:
    """One iteration's inputs to the losses: the grown model's outputs, the FROZEN OLD model's outputs (cached
    or computed), Ỹ from the old model, the regions; updates the step's running prototypes on Ỹ."""
    num_old = strategy.context.num_old
    labels = batch.labels
    stages_new = stages_old = None
    # Losses and prototypes run in float32: cast once here rather than in every loss.
    if strategy.needs_encoder_stages:
        logits_new, features_new, stages_new = network.forward_with_stages(batch.images)
        with torch.no_grad():
            logits_old, features_old, stages_old = old_network.forward_with_stages(batch.images)
        logits_new, features_new, logits_old, features_old = (t.float() for t in (logits_new, features_new, logits_old, features_old))
    else:
        logits_new, features_new = (t.float() for t in network.forward_with_features(batch.images))
        if strategy.needs_old_model:
            logits_old, features_old = old_model_outputs(batch, old_network, num_old)
        else:
            logits_old = features_old = None
    pseudo = make_pseudo_labels(labels, logits_old, thresholds.to(labels.device), num_old) if strategy.needs_old_model else labels
    if strategy.uses_running_prototypes:
        strategy.context.running_prototypes.update_from_batch(features_new, running_prototype_labels(pseudo, num_old))
    old_region, current_region = region_masks(pseudo, num_old)
    return StepBatch(labels=labels, logits_new=logits_new, features_new=features_new, logits_old=logits_old, features_old=features_old,  # type: ignore[arg-type]
                     pseudo_labels=pseudo, old_region=old_region, current_region=current_region, stages_new=stages_new, stages_old=stages_old)


def _stored_prototypes(
    parent: BundleVersion, settings: StrategySettings, sink: EventSink, bootstrap: Callable[[], dict[str, torch.Tensor]],
) -> tuple[FeaturePrototypes, StrategySettings]:
    """The parent's prototypes (``bootstrap`` makes them for a parent that stores none: an imported model,
    prototype_bootstrap.py); a bundle written before pre-activation prototypes existed falls back to the
    post-activation affinity space, said in the log and recorded in the step's settings."""
    stored = parent.load_prototypes() or bootstrap()
    prototypes = FeaturePrototypes.from_tensors(stored)
    if prototypes.pre is None and getattr(settings, "affinity_features", "post_activation") == "pre_activation":
        sink.log(f"version {parent.version} stores no pre-activation prototypes (written by an older CISSegmentation): "
                 "measuring affinities on post-activation features instead")
        settings = dataclasses.replace(settings, affinity_features="post_activation")  # type: ignore[call-arg]
    return prototypes, settings


def learn_step(request: LearnRequest, *, device: torch.device, sink: EventSink, cancel: CancelToken) -> tuple[BundleVersion, GuardResult]:
    """Run one step; returns the written version and the guard's verdict (raises if rejected).

    The bundle's writer lock is held for the whole step: a second writer fails at once (exit 4)."""
    bundle = Bundle.open_or_raise(request.bundle)
    with bundle_lock(bundle.root, "learn", sink=sink):
        return _learn_step_locked(request, device=device, sink=sink, cancel=cancel)


def _learn_step_locked(request: LearnRequest, *, device: torch.device, sink: EventSink, cancel: CancelToken) -> tuple[BundleVersion, GuardResult]:
    settings = parse_settings_or_raise(request.strategy, request.strategy_settings)
    strategy_type = STRATEGIES[request.strategy]
    if not issubclass(strategy_type, Strategy):
        raise InputError(f"strategy {request.strategy} adapts the bundle's organs to a new site's CTs; it adds no organ",
                         f"run `ciss adapt -b {request.bundle} -i CT… -l LABEL… --strategy {request.strategy}`, or learn organs with --strategy {DEFAULT_STRATEGY}")
    if strategy_type.needs_encoder_stages and settings.teacher == "cached":
        raise InputError(f"{request.strategy} reads the old model's encoder stages on every patch; the cached teacher holds only its logits and features",
                         "leave the setting teacher at auto, or set it to online")
    bundle = Bundle.open_or_raise(request.bundle)
    if request.resume and (finished := _finished_step(bundle, request, sink)) is not None:
        return finished
    parent = parent_or_raise(bundle, request.parent_version)
    settings = _few_new_organs_drawn_alike(settings, request, len(parent.registry), sink)
    version = bundle.next_version()
    step = parent.settings.step + 1
    registry = parent.registry.with_new_organs([(name, rgb) for name, _, rgb in request.organs], step=step, version=version)
    num_old, num_new = len(parent.registry), len(request.organs)
    value_to_class = {value: registry.by_name(name).label for name, value, _ in request.organs}
    preprocessing = PreprocessingConfig.from_json(parent.settings.preprocessing)
    cases = prepare_cases(request.images, request.labels, value_to_class=value_to_class, other_labels="error", config=preprocessing, sink=sink)
    fingerprint = _fingerprint(request, parent.version, [c.sha256 for c in cases])
    work_dir = learn_run_dir(bundle.root, fingerprint)  # made by the first checkpoint

    old_network = load_network(parent, device).requires_grad_(False)
    stored_prototypes, settings = _stored_prototypes(parent, settings, sink, lambda: bootstrap_prototypes(
        old_network, cases, patch_size=preprocessing.patch_size, device=device, sink=sink))
    cached_teacher = _teacher_is_cached(strategy_type, settings.teacher, teacher_map_bytes(cases, num_old, old_network.feature_channels), sink)
    step_data = analyse_step_cases(
        old_network, cases, num_old=num_old, num_new=num_new, patch_size=preprocessing.patch_size, device=device,
        fixed_threshold=request.fixed_threshold, sink=sink, keep_teacher=cached_teacher,
    )
    seed_run(request.seed)
    network = grow_classifier(copy.deepcopy(old_network).requires_grad_(True), num_new)
    if scale_new_class_gradients(network, num_old, settings.new_class_lr_scale):
        sink.log(f"the new organs' output channels learn at {settings.new_class_lr_scale:g} x the step's learning rate")
    context = StepContext(num_old=num_old, num_new=num_new, stored_prototypes=stored_prototypes, running_prototypes=step_data.running_prototypes)
    strategy = strategy_type(context, settings)
    sampler = PatchSampler(
        cases, num_classes=registry.num_classes, patch_size=preprocessing.patch_size, batch_size=request.batch_size, seed=request.seed,
        maps=step_data.teacher_maps, augment=request.loop.augmentation, intensities=preprocessing.model_intensities(),
        background_share=settings.background_share, background_in_body=settings.background_in_body,
        new_organs=list(value_to_class.values()), new_organ_weight=settings.new_organ_weight,
    )
    shares = ShareRecorder(network, sink, stage="learn")

    def loss_fn(batch: PatchBatch, iteration: int) -> tuple[torch.Tensor, dict[str, float]]:
        terms = strategy.weighted_terms(make_step_batch(batch, network, old_network, strategy, step_data.thresholds))
        shares.observe(terms, iteration)
        return total_loss(terms)

    def restore_step_state(saved: dict[str, torch.Tensor]) -> None:
        """What a checkpoint holds besides weights: the running prototypes and the gradient-share sums."""
        context.running_prototypes = FeaturePrototypes.from_tensors(saved)
        shares.average.restore(saved)

    sink.log(f"learning {', '.join(n for n, _, _ in request.organs)} on {len(cases)} CT(s) with {request.strategy}, "
             f"{request.loop.iterations} iterations on {device} ({_patch_draws(settings)}); "
             f"parent version {parent.version}"
             + (f"; old model's outputs {'cached from its whole-CT pass' if cached_teacher else 'computed on every patch'}" if strategy.needs_old_model else ""))
    result = run_training_loop(
        network=network, loss_fn=loss_fn, sampler=sampler, config=request.loop, device=device, work_dir=work_dir,
        fingerprint=fingerprint, resume=request.resume, sink=sink, cancel=cancel, stage="learn",
        extra_state=ExtraState(save=lambda: {**context.running_prototypes.to_tensors(), **shares.average.to_tensors()}, restore=restore_step_state),
    )
    final, new_predictions = prototypes_and_predictions(
        network, [(c.image, c.sampling_label) for c in cases], num_classes=registry.num_classes,
        patch_size=preprocessing.patch_size, device=device, sink=sink,
    )
    # Old organs keep their stored prototypes; background and the new organs come from the clean pass.
    if stored_prototypes.pre is None:
        final.pre = None  # the old organs' pre-activation means are unknown: store none rather than a mix
    final.copy_rows_from(stored_prototypes, slice(1, 1 + num_old))
    old_organs = [(o.label, o.name) for o in parent.registry.organs]
    guard = check_forgetting(
        step_data.old_predictions, new_predictions, old_organs, threshold=request.guard_threshold,
        new_organ_masks=[c.label.as_tensor()[0] > num_old for c in cases], one_piece=postprocessed_labels(parent),
        known_absent=organs_known_absent(parent.history, [c.sha256 for c in cases], old_organs),
    )
    fit = new_organ_fit(
        [c.label.as_tensor()[0] for c in cases], new_predictions, [(registry.by_name(name).label, name) for name, _, _ in request.organs],
        spacing_mm=preprocessing.spacing_mm, one_piece=postprocessed_labels(parent, registry),
    )
    report_fit(fit, sink, ct_names=[str(path) for path in request.images], short_step=request.loop.iterations < THOROUGH_ITERATIONS)
    written = publish_or_reject(
        bundle_root=bundle.root, version=version, parent_version=parent.version, fingerprint=fingerprint, guard=guard,
        accept_forgetting=request.accept_forgetting, sink=sink, cts=request.images, advice=retry_advice(request.strategy, request.loop.iterations),
        write=lambda status: _write_step_version(
            request=request, root=bundle.root, parent=parent, version=version, step=step, registry=registry, network=network,
            prototypes=final, thresholds=step_data.thresholds, guard=guard, status=status, result=result, strategy=strategy.describe(),
            gradient_shares=shares.average.mean(), cases=cases, fingerprint=fingerprint,
            appearance=organ_medians(cases, registry), fit=fit,
        ),
    )
    return written, guard


def _few_new_organs_drawn_alike(settings: StrategySettings, request: LearnRequest, num_old: int, sink: EventSink) -> StrategySettings:
    """A step adding fewer organs than its parent knows draws each as often as each old one unless the user set
    ``new_organ_weight``: on the phantom validation split the default weight paid for a step adding as many organs as
    the base knew (4-4), and lost in steps adding two (4-2) or one (4-1) beside more old ones (benchmarks/RESULTS.md
    (av), (aw), (ax))."""
    if len(request.organs) >= num_old or settings.new_organ_weight == 1 or "new_organ_weight" in request.strategy_settings:
        return settings
    sink.log(f"{len(request.organs)} new organ(s) beside {num_old} known: each drawn as often as an old one (new_organ_weight "
             f"{settings.new_organ_weight:g} applies to steps adding at least as many organs as the model knows; set it to weigh these)")
    return dataclasses.replace(settings, new_organ_weight=1.0)


def retry_advice(strategy: str, iterations: int) -> str:
    """What to try after the guard rejects a step. On the two real CTs, MiB's steps kept 0.96-0.99 x of the old organs
    and passed the guard in every seed, and 1000-iteration steps of MiB and of `uniform` (then the default) passed it where
    `uniform`'s 400-iteration steps were rejected (benchmarks/RESULTS.md (s), (t)); 1000 iterations are the default since (t).
    PCDD with its present ORCD passed in 3 seeds of 3 but kept less than MiB (0.93-0.99 x against 0.97-0.99 x, (v))."""
    tries = ([] if iterations >= THOROUGH_ITERATIONS else ["--preset thorough"]) + ([] if strategy == "mib" else ["--strategy mib"])
    return f"; {' or '.join(tries)} kept the old organs better on real CT" if tries else ""


def _finished_step(bundle: Bundle, request: LearnRequest, sink: EventSink) -> tuple[BundleVersion, GuardResult] | None:
    data = [case_sha256(image, label) for image, label in zip(request.images, request.labels)]
    return finished_step(bundle, lambda parent: _fingerprint(request, parent, data), sink, advice=retry_advice(request.strategy, request.loop.iterations))


def _patch_draws(settings: StrategySettings) -> str:
    """How the step's patches are drawn, in the log's words."""
    background = f"{settings.background_share:.0%} of the patches centred on background{' inside the body' if settings.background_in_body else ''}"
    return background + (f", each new organ drawn {settings.new_organ_weight:g} x as often as an old one" if settings.new_organ_weight != 1 else "")


def _write_step_version(
    *,
    request: LearnRequest,
    root: Path,
    parent: BundleVersion,
    version: str,
    step: int,
    registry: ClassRegistry,
    network: SegmentationNetwork,
    prototypes: FeaturePrototypes,
    thresholds: torch.Tensor,
    guard: GuardResult,
    status: str,
    result: LoopResult,
    strategy: dict[str, Any],
    cases: Sequence[PreparedCase],
    gradient_shares: dict[str, float],
    fingerprint: str,
    appearance: dict[str, float],
    fit: dict[str, OrganFit],
) -> BundleVersion:
    """The step's version folder: grown network, prototypes with τ, lineage (with the new organs' appearance on this
    step's CTs, site_appearance.py, and how well they were learned there, new_organ_fit.py), guard verdict, status."""
    settings, entry = step_record(
        request, parent=parent, version=version, step=step, kind="incremental", organs=[name for name, _, _ in request.organs],
        data=[c.sha256 for c in cases], organs_per_case=organs_per_case(cases, registry), status=status, strategy=strategy, guard=guard, fingerprint=fingerprint, result=result,
        metrics={f"agreement_{k}": v for k, v in guard.agreement.items() if v is not None},
        # Mean share of each weighted term in the gradient norm on the shared parameters (gradient_shares.py).
        gradient_shares=gradient_shares, **bootstrap_record(parent), **{APPEARANCE_KEY: appearance},
        new_organ_fit={name: organ.to_json() for name, organ in fit.items()},
    )
    settings.update({
        "step": step, "network": network.config.to_json(),
        "pseudo_labels": {"thresholds": "fixed" if request.fixed_threshold is not None else "per_class_median", "fixed_threshold": request.fixed_threshold},
    })
    history = parent.history + [entry]
    changelog = {**parent.metadata.get("changelog", {}), version: f"step {step}: added {', '.join(n for n, _, _ in request.organs)} ({strategy['name']}, {status})"}
    return write_version(
        root, version=version, registry=registry, settings=settings, state_dict=network.state_dict(),
        prototypes={**prototypes.to_tensors(), "entropy_thresholds": thresholds.float()}, history=history, changelog=changelog,
        make_current=status == STATUS_PUBLISHED,
    )
