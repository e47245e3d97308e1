"""The base step: a bundle's first version, trained with Dice + CE on fully labelled CTs."""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.losses import DiceCELoss

from ..api.bundle_record import STATUS_PUBLISHED
from ..api.events import TrainMetric
from ..atomic import ensure_writable_dir, remove_empty_folders
from ..bundle import Bundle, BundleVersion, write_version
from ..bundle_lock import bundle_lock
from ..cancellation import CancelToken
from ..device import seed_run
from ..errors import Cancelled, InputError
from ..events import EventSink
from ..network import NetworkConfig, build_network, placed
from ..preprocessing import PreprocessingConfig
from ..registry import ClassRegistry
from .augmentation import organ_contrast_for, share_that_ran
from .cases import case_sha256, organs_per_case, prepare_cases
from .distributed import DistributedContext
from .finished_runs import version_written_by
from .loop import LossFn, run_training_loop
from .loop_config import ORGAN_CONTRAST, SYNTHETIC_CASES, SYNTHETIC_SHARE, LoopConfig
from .prototype_pass import prototypes_and_predictions
from .run_record import history_entry, run_fingerprint, training_record
from .site_appearance import APPEARANCE_KEY, organ_medians
from .sampler import PatchBatch, PatchSampler
from .synthetic_cases import synthetic_cases

BASE_VERSION = "1.0.0"


@dataclasses.dataclass(frozen=True)
class BaseTrainingRequest:
    """Everything ``ciss train`` needs; keyword-built so no argument can shift meaning."""

    images: Sequence[Path]
    labels: Sequence[Path]
    organs: Sequence[tuple[str, int, tuple[int, int, int] | None]]  # name, value in the label files, colour
    output: Path
    loop: LoopConfig
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    init_filters: int = 16
    batch_size: int = 2
    seed: int = 0
    other_labels: str = "error"
    resume: bool = False
    # Share of patches whose enhancing organs get their own intensity offsets (augmentation.RandOrganContrastd):
    # here the labels cover every organ the model learns (`ciss adapt` has its own share; `ciss learn` none: its labels
    # hold only the new organs).
    organ_contrast: float = ORGAN_CONTRAST
    # Share of patches from synthetic phantom patients beside the site's CTs (training/synthetic_cases.py).
    synthetic_share: float = SYNTHETIC_SHARE
    # How many synthetic patients that share is drawn from.
    synthetic_cases: int = SYNTHETIC_CASES
    # Organ contrast of their patches (the site's patches keep ``organ_contrast``); None: ``organ_contrast`` too. At
    # 0.75 single-CT bases transferred better (mean DSC 0.58 against 0.53 over 18 cells) and learned their own
    # gallbladder in every seed, but the base on both real CTs left its gallbladder below 0.85 in 2 of 6 runs
    # (0.00, 0.73), at the site's share in none (0.89-0.94; benchmarks/RESULTS.md (ar), (as)).
    synthetic_organ_contrast: float | None = None

    def synthetic_contrast_share(self) -> float:
        """The organ contrast share the synthetic patients' patches get, set or the site's."""
        return self.organ_contrast if self.synthetic_organ_contrast is None else self.synthetic_organ_contrast


def work_dir_for(output: Path) -> Path:
    """Checkpoints live beside the bundle, never inside it: a bundle only ever holds complete versions."""
    return output.parent / f".{output.name}.work"


def _fingerprint(request: BaseTrainingRequest, data_hashes: list[str], world_size: int) -> str:
    return run_fingerprint({
        "organs": [list(o[:2]) for o in request.organs],
        "loop": dataclasses.asdict(request.loop),
        "organ_contrast": request.organ_contrast,
        "synthetic_share": request.synthetic_share,
        "synthetic_cases": request.synthetic_cases,
        "synthetic_organ_contrast": request.synthetic_contrast_share(),
        "preprocessing": request.preprocessing.to_json(),
        "init_filters": request.init_filters,
        "batch_size": request.batch_size,
        "seed": request.seed,
        # Each rank draws its own patches: a checkpoint resumes exactly only with as many processes.
        "world_size": world_size,
        "data": data_hashes,
    })


def dice_ce_loss(model: torch.nn.Module) -> LossFn:
    """Dice + CE over every class of fully labelled patches: the base model's loss (and that of a step given every
    organ's labels, benchmarks/labelled_step.py)."""
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)

    def loss_fn(batch: PatchBatch, iteration: int) -> tuple[torch.Tensor, dict[str, float]]:
        loss = dice_ce(model(batch.images).float(), batch.labels[:, None])
        return loss, {"dice_ce": float(loss.detach())}

    return loss_fn


def train_base_bundle(
    request: BaseTrainingRequest, *, device: torch.device, sink: EventSink, cancel: CancelToken, distributed: DistributedContext = DistributedContext(),
) -> BundleVersion:
    """Train and write the bundle's first version. Under torchrun (``distributed``) every rank trains one
    shared model on its own patches; rank 0 alone checkpoints, computes the prototypes and writes.

    Rank 0 creates the output folder and holds its writer lock for the whole run: a second writer of the
    same folder fails at once (exit 4)."""
    lock = bundle_lock(request.output, "train", sink=sink, create=True) if distributed.is_main else contextlib.nullcontext()
    with lock:
        try:
            return _train_base_bundle_locked(request, device=device, sink=sink, cancel=cancel, distributed=distributed)
        finally:
            if distributed.is_main:
                remove_empty_folders(work_dir_for(request.output))  # a run that failed before its first checkpoint


def _train_base_bundle_locked(
    request: BaseTrainingRequest, *, device: torch.device, sink: EventSink, cancel: CancelToken, distributed: DistributedContext,
) -> BundleVersion:
    output = Path(request.output)
    if (output / "bundle.json").exists():
        if request.resume:  # stopped after publishing, before removing its checkpoint: nothing left to do
            data = [case_sha256(image, label) for image, label in zip(request.images, request.labels)]
            written = version_written_by(Bundle(output), lambda _parent: _fingerprint(request, data, distributed.world_size))
            if written is not None:
                shutil.rmtree(work_dir_for(output), ignore_errors=True)
                sink.log(f"this run had already written {output} (version {written.version}) when it was stopped")
                return written
        raise InputError(f"a bundle already exists at {output}", "choose a new output folder; to add organs to an existing bundle use `ciss learn`")
    ensure_writable_dir(output.parent)
    work_dir = ensure_writable_dir(work_dir_for(output))
    registry = ClassRegistry.from_names([(name, rgb) for name, _, rgb in request.organs], version=BASE_VERSION)
    value_to_class = {value: registry.by_name(name).label for name, value, _ in request.organs}
    cases = prepare_cases(request.images, request.labels, value_to_class=value_to_class, other_labels=request.other_labels, config=request.preprocessing, sink=sink)
    fingerprint = _fingerprint(request, [c.sha256 for c in cases], distributed.world_size)
    synthetic = synthetic_cases(registry, request.synthetic_share, count=request.synthetic_cases, seed=request.seed, config=request.preprocessing, sink=sink)
    synthetic_share = request.synthetic_share if synthetic else 0.0
    synthetic_contrast = share_that_ran(request.synthetic_contrast_share(), request.loop.augmentation) if synthetic else 0.0

    seed_run(request.seed)
    network_config = NetworkConfig(init_filters=request.init_filters, out_channels=registry.num_classes)
    network = placed(build_network(network_config), device)
    sampler = PatchSampler(
        cases + synthetic, num_classes=registry.num_classes, patch_size=request.preprocessing.patch_size, batch_size=request.batch_size,
        seed=distributed.rank_seed(request.seed), augment=request.loop.augmentation,
        organ_contrast=organ_contrast_for(request.organ_contrast, registry), intensities=request.preprocessing.model_intensities(),
        synthetic_share=synthetic_share,
        # Unset, the synthetic patches take the site's pipeline (the sampler's None) rather than a copy of it.
        synthetic_organ_contrast=None if request.synthetic_organ_contrast is None else organ_contrast_for(request.synthetic_organ_contrast, registry),
    )
    loss_fn = dice_ce_loss(distributed.wrap(network, device))
    sink.log(f"training {len(registry)} organs ({', '.join(registry.names)}) on {len(cases)} CT(s)"
             + (f" and {len(synthetic)} synthetic patients ({synthetic_share:g} of the patches, organ contrast {synthetic_contrast:g})" if synthetic else "")
             + f", {request.loop.iterations} iterations on {device}"
             + (f" in each of {distributed.world_size} processes (effective batch {distributed.world_size * request.batch_size})" if distributed.is_distributed else ""))
    result = run_training_loop(
        network=network, loss_fn=loss_fn, sampler=sampler, config=request.loop, device=device,
        work_dir=work_dir, fingerprint=fingerprint, resume=request.resume, sink=sink, cancel=cancel, distributed=distributed,
    )
    if distributed.any_rank(cancel.is_cancelled, device):
        raise Cancelled("cancelled", "run the same command again with --resume to continue")

    def publish() -> BundleVersion:
        """The prototype pass and the bundle's first version, written once (by rank 0 under torchrun)."""
        prototypes, _ = prototypes_and_predictions(
            network, [(c.image, c.label) for c in cases], num_classes=registry.num_classes,
            patch_size=request.preprocessing.patch_size, device=device, sink=sink,
        )
        settings = {
            "status": STATUS_PUBLISHED,
            "step": 1,
            "network": network_config.to_json(),
            "feature_layer": "decoder_final",
            "preprocessing": request.preprocessing.to_json(),
            # DDP averages the ranks' gradients: each iteration saw world_size × batch_size patches.
            "training": training_record(request.loop, batch_size=request.batch_size, seed=request.seed, fingerprint=fingerprint,
                                        loss="dice_ce", world_size=distributed.world_size,
                                        organ_contrast=share_that_ran(request.organ_contrast, request.loop.augmentation),
                                        synthetic_share=synthetic_share, synthetic_cases=len(synthetic),
                                        synthetic_organ_contrast=synthetic_contrast),
            "parent_version": None,
        }
        history = [history_entry(
            version=BASE_VERSION, step=1, kind="base", organs=registry.names, data=[c.sha256 for c in cases], organs_per_case=organs_per_case(cases, registry),
            strategy="supervised (Dice + CE)", parent_version=None, result=result, world_size=distributed.world_size,
            **{APPEARANCE_KEY: organ_medians(cases, registry)},
        )]
        version = write_version(
            output,
            version=BASE_VERSION,
            registry=registry,
            settings=settings,
            state_dict=network.state_dict(),
            prototypes=prototypes.to_tensors(),
            history=history,
            changelog={BASE_VERSION: f"base model: {', '.join(registry.names)}"},
            make_current=True,
        )
        shutil.rmtree(work_dir, ignore_errors=True)
        sink.emit(TrainMetric(seconds_per_iteration=result.seconds_per_iteration, peak_memory_mb=result.peak_memory_mb))
        return version

    return distributed.run_on_main(publish)
