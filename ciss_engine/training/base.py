"""The base step: a bundle's first version, trained with Dice + CE on fully labelled CTs."""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.losses import DiceCELoss

from ..atomic import ensure_writable_dir
from ..bundle import STATUS_PUBLISHED, BundleVersion, write_version
from ..cancellation import CancelToken
from ..errors import InputError
from ..events import EventSink
from ..network import NetworkConfig, build_network
from ..preprocessing import PreprocessingConfig
from ..registry import ClassRegistry
from .cases import prepare_cases
from .loop import run_training_loop
from .loop_config import LoopConfig
from .prototype_pass import compute_global_prototypes
from .sampler import PatchBatch, PatchSampler

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


def work_dir_for(output: Path) -> Path:
    """Checkpoints live beside the bundle, never inside it: a bundle only ever holds complete versions."""
    return output.parent / f".{output.name}.work"


def _fingerprint(request: BaseTrainingRequest, data_hashes: list[str]) -> str:
    settings = {
        "organs": [list(o[:2]) for o in request.organs],
        "loop": dataclasses.asdict(request.loop),
        "preprocessing": request.preprocessing.to_json(),
        "init_filters": request.init_filters,
        "batch_size": request.batch_size,
        "seed": request.seed,
        "data": data_hashes,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def train_base_bundle(request: BaseTrainingRequest, *, device: torch.device, sink: EventSink, cancel: CancelToken) -> BundleVersion:
    output = Path(request.output)
    if (output / "bundle.json").exists():
        raise InputError(f"a bundle already exists at {output}", "choose a new output folder; to add organs to an existing bundle use `ciss learn`")
    ensure_writable_dir(output.parent)
    work_dir = ensure_writable_dir(work_dir_for(output))
    registry = ClassRegistry.from_names([(name, rgb) for name, _, rgb in request.organs], version=BASE_VERSION)
    value_to_class = {value: registry.by_name(name).label for name, value, _ in request.organs}
    cases = prepare_cases(request.images, request.labels, value_to_class=value_to_class, other_labels=request.other_labels, config=request.preprocessing, sink=sink)
    fingerprint = _fingerprint(request, [c.sha256 for c in cases])

    torch.manual_seed(request.seed)
    network_config = NetworkConfig(init_filters=request.init_filters, out_channels=registry.num_classes)
    network = build_network(network_config).to(device)
    sampler = PatchSampler(cases, num_classes=registry.num_classes, patch_size=request.preprocessing.patch_size, batch_size=request.batch_size, seed=request.seed)
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)

    def loss_fn(batch: PatchBatch, iteration: int) -> tuple[torch.Tensor, dict[str, float]]:
        loss = dice_ce(network(batch.images).float(), batch.labels[:, None])
        return loss, {"dice_ce": float(loss.detach())}

    sink.log(f"training {len(registry)} organs ({', '.join(registry.names)}) on {len(cases)} CT(s), {request.loop.iterations} iterations on {device}")
    result = run_training_loop(
        network=network, loss_fn=loss_fn, sampler=sampler, config=request.loop, device=device,
        work_dir=work_dir, fingerprint=fingerprint, resume=request.resume, sink=sink, cancel=cancel,
    )
    cancel.raise_if_cancelled("run the same command again with --resume to continue")
    prototypes = compute_global_prototypes(
        network, [(c.image, c.label) for c in cases], num_classes=registry.num_classes,
        patch_size=request.preprocessing.patch_size, device=device, sink=sink,
    )
    settings = {
        "status": STATUS_PUBLISHED,
        "step": 1,
        "network": network_config.to_json(),
        "feature_layer": "decoder_final",
        "preprocessing": request.preprocessing.to_json(),
        "training": {**dataclasses.asdict(request.loop), "batch_size": request.batch_size, "seed": request.seed, "loss": "dice_ce"},
        "parent_version": None,
    }
    history = [
        {
            "version": BASE_VERSION,
            "step": 1,
            "kind": "base",
            "organs": registry.names,
            "data_sha256": [c.sha256 for c in cases],
            "iterations": request.loop.iterations,
            "strategy": "supervised (Dice + CE)",
            "losses": result.last_losses,
            "metrics": {"seconds_per_iteration": result.seconds_per_iteration, "peak_memory_mb": result.peak_memory_mb},
            "parent_version": None,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    ]
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
    sink.metric(stage="train", seconds_per_iteration=result.seconds_per_iteration, peak_memory_mb=result.peak_memory_mb)
    return version
