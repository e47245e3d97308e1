"""The iteration loop shared by base training and incremental steps.

It owns what every step needs and no step should rewrite: SGD with Nesterov momentum and poly
decay (PyTorch's PolynomialLR, checkpointed), autocast (bf16 on capable CPUs, AMP on CUDA), gradient clipping, progress events,
checkpoints every ``checkpoint_every`` iterations and on cancel, and exact resume. An iteration whose gradient is NaN
or infinite changes no weight (one bad step would otherwise make every weight NaN and the bundle useless); many in a
row stop the run with the fix. What is learned
comes from the ``loss_fn`` a strategy passes in.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..api.events import CheckpointSaved
from ..cancellation import CancelToken
from ..device import autocast, autocast_dtype
from ..errors import Cancelled, TrainingDiverged
from ..events import EventSink
from .checkpoint import ExtraState, load_checkpoint_or_raise, save_checkpoint
from .distributed import DistributedContext
from .loop_config import LoopConfig
from .precision import training_dtype
from .sampler import PatchBatch, PatchSampler, iteration_seed

# Skipped iterations in a row that stop a run: one bad patch is skipped, a diverged run is not trained on for hours.
MAX_NON_FINITE_IN_A_ROW = 10

LossFn = Callable[[PatchBatch, int], tuple[torch.Tensor, dict[str, float]]]


@dataclasses.dataclass(frozen=True)
class LoopResult:
    iterations: int
    seconds_per_iteration: float
    last_losses: dict[str, float]
    peak_memory_mb: float


def make_optimizer(network: torch.nn.Module, config: LoopConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(network.parameters(), lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; use sgd or adamw")


def make_scheduler(optimizer: torch.optim.Optimizer, config: LoopConfig) -> torch.optim.lr_scheduler.PolynomialLR:
    """nnU-Net's poly decay, lr · (1 − t/T)^power, stepped once an iteration; its state is checkpointed."""
    return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=config.iterations, power=config.poly_power)


def run_training_loop(
    *,
    network: torch.nn.Module,
    loss_fn: LossFn,
    sampler: PatchSampler,
    config: LoopConfig,
    device: torch.device,
    work_dir: Path,
    fingerprint: str,
    resume: bool,
    sink: EventSink,
    cancel: CancelToken,
    stage: str = "train",
    distributed: DistributedContext = DistributedContext(),
    extra_state: ExtraState | None = None,
    patch_network: torch.nn.Module | None = None,
) -> LoopResult:
    """Train ``network`` in place for ``config.iterations`` iterations (or the rest of them on resume).

    Under torchrun ``loss_fn`` runs the network through its DistributedDataParallel wrapper, so the
    gradients reaching the optimizer are already averaged; ``network`` itself is what is checkpointed.
    ``extra_state``: what else ``loss_fn`` changes from one iteration to the next, checkpointed with it.
    ``patch_network``: the network a patch goes through, where ``network`` holds more than it (default: ``network``).
    A resume without a checkpoint (the run was stopped before its first one) starts from the beginning.
    """
    optimizer = make_optimizer(network, config)
    scheduler = make_scheduler(optimizer, config)
    start = 0
    state = load_checkpoint_or_raise(work_dir, fingerprint=fingerprint) if resume else None
    if state is not None:
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if extra_state is not None and state.get("extra"):
            extra_state.restore(state["extra"])
        start = int(state["iteration"])
        sink.log(f"resuming {stage} at iteration {start} of {config.iterations}")
    elif resume:
        sink.log(f"no checkpoint of this run in {work_dir}: {stage} starts from the beginning")
    network.to(device).train()
    dtype = _dtype(patch_network or network, sampler, start, device, config, sink)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses: dict[str, float] = {}
    non_finite_in_a_row = 0

    def checkpoint(at: int) -> None:
        extra = extra_state.save() if extra_state is not None else None
        distributed.run_on_main(lambda: save_checkpoint(
            work_dir, network=network, optimizer=optimizer, scheduler=scheduler, iteration=at, fingerprint=fingerprint, extra=extra))
        sink.emit(CheckpointSaved(stage=stage, iteration=at, path=str(work_dir)))

    started = time.perf_counter()
    iteration = start
    for iteration in range(start, config.iterations):
        if distributed.any_rank(cancel.is_cancelled, device):
            checkpoint(iteration)
            raise Cancelled(f"{stage} cancelled at iteration {iteration} of {config.iterations}", "run the same command again with --resume to continue")
        batch = sampler.batch(iteration).to(device)
        torch.manual_seed(iteration_seed(sampler.seed, iteration))
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss, losses = loss_fn(batch, iteration)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        gradient_norm = torch.nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
        if scaler.is_enabled() or bool(torch.isfinite(gradient_norm)):  # fp16: the scaler skips such a step itself
            scaler.step(optimizer)
            non_finite_in_a_row = 0
        else:
            non_finite_in_a_row += 1
            _skip_or_stop(non_finite_in_a_row, iteration, stage, config, sink)
        scaler.update()
        learning_rate = optimizer.param_groups[0]["lr"]
        scheduler.step()
        sink.progress(stage, iteration + 1, config.iterations, loss=float(loss.detach()), lr=learning_rate)
        if (iteration + 1) % config.checkpoint_every == 0 and iteration + 1 < config.iterations:
            checkpoint(iteration + 1)
    done = max(config.iterations - start, 1)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _peak_rss_mb()
    return LoopResult(iterations=config.iterations, seconds_per_iteration=(time.perf_counter() - started) / done, last_losses=losses, peak_memory_mb=peak)


def _dtype(network: torch.nn.Module, sampler: PatchSampler, start: int, device: torch.device, config: LoopConfig, sink: EventSink) -> torch.dtype | None:
    """The autocast dtype of this run; says so when CPU bf16 is given up for float32 (``precision.py``)."""
    chosen = autocast_dtype(device, config.amp, config.cpu_bf16)
    dtype = training_dtype(chosen, device, network, sampler.batch(start).images[:1].to(device))
    if dtype is not chosen:
        sink.log("float32 instead of bf16: the patch makes a feature map smaller than a convolution's kernel, where this CPU's "
                 "bf16 convolutions compute wrong gradients (patches of 24 voxels or more per axis keep bf16 for the engine's own network)")
    return dtype


def _skip_or_stop(in_a_row: int, iteration: int, stage: str, config: LoopConfig, sink: EventSink) -> None:
    """Say that ``iteration`` changed no weight; after ``MAX_NON_FINITE_IN_A_ROW`` such iterations, stop with the fix."""
    sink.log(f"{stage} iteration {iteration + 1}: the gradient is NaN or infinite; this iteration changed no weight")
    if in_a_row >= MAX_NON_FINITE_IN_A_ROW:
        raise TrainingDiverged(
            f"{stage} diverged: the gradient was NaN or infinite in {in_a_row} iterations in a row (the last: {iteration + 1})",
            f"run again with a lower --learning-rate (this run: {config.learning_rate}); the last checkpoint and the bundle are unchanged",
        )


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
