"""Benchmark (ai): one patch alone against two together through the network, per patch, on this CPU.

PyTorch's CPU convolution runs a batch of one small 3D input through its im2col path instead of oneDNN's, which
decides what ``inference.WINDOW_BATCH`` saves in whole-CT passes (sliding-window inference and the replay buffer's
bottleneck pass). Alternates the two batch sizes in one process, so their ratio is measured under the same load.

Usage: OMP_NUM_THREADS=1 python benchmarks/window_batch.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ciss_engine.network import NetworkConfig, build_network  # noqa: E402

# (init_filters, patch side): the tests' and phantom benchmarks' networks, and `ciss train`'s default.
CONFIGS = ((8, 32), (8, 48), (16, 64))


def seconds_per_patch(run, batch: torch.Tensor, repeats: int) -> float:
    run(batch)
    start = time.perf_counter()
    for _ in range(repeats):
        run(batch)
    return (time.perf_counter() - start) / repeats / batch.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| filters | patch | pass | 1 patch (s) | 2 patches, per patch (s) | ratio |\n|---:|---:|---|---:|---:|---:|")
    for filters, side in CONFIGS:
        torch.manual_seed(0)
        network = build_network(NetworkConfig(init_filters=filters, out_channels=5)).eval()
        for name, run in (("whole network", network), ("encoder (bottleneck)", network.bottleneck)):
            with torch.no_grad():
                one = seconds_per_patch(run, torch.randn(1, 1, side, side, side), args.repeats)
                two = seconds_per_patch(run, torch.randn(2, 1, side, side, side), args.repeats)
            print(f"| {filters} | {side}³ | {name} | {one:.3f} | {two:.3f} | {one / two:.2f} × |", flush=True)


if __name__ == "__main__":
    main()
