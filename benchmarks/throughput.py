"""Benchmark (h): what makes a training iteration cheaper on this machine (issue 14, item 3).

One process, one real CT (``ts_abdpelvis``, organs 1-4) prepared on the network grid, the base step's
loss (Dice + CE), SGD; every variant runs ``--iterations`` timed iterations after ``--warmup`` untimed
ones, in rounds so that load from other work spreads over all variants (ratios, not seconds, are the
result). Variants:
- ``eager``: the loop as ``ciss train`` runs it (patches drawn and augmented on the training thread, the network's
  weights channels-last: ``network.placed``);
- ``contiguous layout``: the eager loop with the weights in PyTorch's default layout (the engine before (bd));
- ``prefetch``: the next iteration's patches drawn on a second thread while this one trains;
- ``compile``: ``torch.compile`` (inductor) of the network; its compile time is reported apart;
- ``threads=1``: one math thread instead of all cores;
- ``batch 1, patch ×1.26``: the same voxels per iteration as one larger patch;
- ``bf16 autocast``: the eager loop under CPU bf16 autocast, as ``ciss train --cpu-bf16`` runs it where the CPU has
  native bf16 (the other variants run in float32, the CPU default).

Usage: python benchmarks/throughput.py [--init-filters 8] [--patch-size 48] [--spacing 4] [--iterations 10]
Prints a markdown table and writes throughput.json next to it (``--output``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from monai.losses import DiceCELoss

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ciss_engine.device import autocast, autocast_dtype  # noqa: E402
from ciss_engine.events import EventSink  # noqa: E402
from ciss_engine.network import NetworkConfig, build_network, placed  # noqa: E402
from ciss_engine.preprocessing import PreprocessingConfig  # noqa: E402
from ciss_engine.training.cases import prepare_cases  # noqa: E402
from ciss_engine.training.sampler import PatchBatch, PatchSampler  # noqa: E402

DATA = Path(os.environ.get("CISS_DATA", ROOT.parent / "shared" / "data"))
Step = Callable[[int], None]


def make_step(network: torch.nn.Module, sampler: PatchSampler, *, prefetch: bool, dtype: torch.dtype | None = None) -> tuple[Step, Callable[[], None]]:
    """One training iteration (patches, forward, backward, SGD), and a function that stops its worker."""
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    pool = ThreadPoolExecutor(max_workers=1) if prefetch else None
    ahead: dict[int, Future] = {}  # at most one: the next iteration's patches, being drawn

    def batch(iteration: int) -> PatchBatch:
        if pool is None:
            return sampler.batch(iteration)
        future = ahead.pop(iteration, None) or pool.submit(sampler.batch, iteration)
        ahead.clear()  # a jump to another iteration (the next round) leaves nothing stale behind
        ahead[iteration + 1] = pool.submit(sampler.batch, iteration + 1)
        return future.result()

    def step(iteration: int) -> None:
        patches = batch(iteration)
        optimizer.zero_grad(set_to_none=True)
        with autocast(torch.device("cpu"), dtype):
            logits = network(patches.images)
        loss = loss_fn(logits.float(), patches.labels[:, None])
        loss.backward()
        optimizer.step()

    return step, (lambda: pool.shutdown(wait=True, cancel_futures=True)) if pool else (lambda: None)


def timed(step: Step, start: int, count: int) -> float:
    began = time.perf_counter()
    for iteration in range(start, start + count):
        step(iteration)
    return (time.perf_counter() - began) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init-filters", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=48)
    parser.add_argument("--spacing", type=float, default=4.0)
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per variant and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile (it needs a C++ compiler)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "output" / "throughput")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    case = DATA / "ct" / "ts_abdpelvis"
    patch = (args.patch_size,) * 3
    large = (round(args.patch_size * 2 ** (1 / 3) / 16) * 16,) * 3
    sink = EventSink("quiet")

    def sampler_for(size: tuple[int, ...], batch_size: int) -> PatchSampler:
        config = PreprocessingConfig(spacing_mm=(args.spacing,) * 3, patch_size=size)
        cases = prepare_cases([case / "image.nii.gz"], [case / "label_seg8.nii.gz"], value_to_class={1: 1, 2: 2, 3: 3, 4: 4},
                              other_labels="background", config=config, sink=sink)
        return PatchSampler(cases, num_classes=5, patch_size=size, batch_size=batch_size, seed=0, augment=True)

    def network(contiguous: bool = False) -> torch.nn.Module:
        torch.manual_seed(0)
        built = build_network(NetworkConfig(init_filters=args.init_filters, out_channels=5)).train()
        return built if contiguous else placed(built, torch.device("cpu"))

    variants: dict[str, tuple[Step, Callable[[], None], int]] = {}
    base_sampler = sampler_for(patch, 2)
    variants["eager"] = (*make_step(network(), base_sampler, prefetch=False), threads)
    variants["contiguous layout (before (bd))"] = (*make_step(network(contiguous=True), base_sampler, prefetch=False), threads)
    variants["prefetch (patches on a second thread)"] = (*make_step(network(), base_sampler, prefetch=True), threads)
    if autocast_dtype(torch.device("cpu"), cpu_bf16=True) is torch.bfloat16:
        variants["bf16 autocast"] = (*make_step(network(), base_sampler, prefetch=False, dtype=torch.bfloat16), threads)
    variants["threads=1"] = (*make_step(network(), base_sampler, prefetch=False), 1)
    variants[f"batch 1, patch {large[0]}³"] = (*make_step(network(), sampler_for(large, 1), prefetch=False), threads)
    compile_seconds = None
    if not args.no_compile:
        compiled = torch.compile(network())
        step, stop = make_step(compiled, base_sampler, prefetch=False)
        began = time.perf_counter()
        step(0)  # the first call compiles forward and backward
        compile_seconds = time.perf_counter() - began
        variants["torch.compile (inductor)"] = (step, stop, threads)

    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        for name, (step, _, n_threads) in variants.items():
            torch.set_num_threads(n_threads)
            start = 1000 * (round_index + 1)
            timed(step, start - args.warmup, args.warmup)
            seconds[name].append(timed(step, start, args.iterations))
            print(f"round {round_index + 1}: {name}: {seconds[name][-1]:.3f} s / iteration", flush=True)
    torch.set_num_threads(threads)
    for _, stop, _ in variants.values():
        stop()

    eager = min(seconds["eager"])
    lines = [
        f"SegResNet {args.init_filters} filters, patch {args.patch_size}³ batch 2 (unless said), {args.spacing} mm, augmentation on, "
        f"{threads} threads, best of {args.rounds} rounds of {args.iterations} iterations",
        "", "| variant | s / iteration | × eager |", "|---|---:|---:|",
    ]
    for name, values in seconds.items():
        lines.append(f"| {name} | {min(values):.3f} | {min(values) / eager:.2f} |")
    if compile_seconds is not None:
        lines.append(f"\ntorch.compile: first iteration (compiling) took {compile_seconds:.1f} s")
    print("\n".join(lines))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "throughput.json").write_text(json.dumps({"seconds": seconds, "compile_seconds": compile_seconds, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))


if __name__ == "__main__":
    main()
