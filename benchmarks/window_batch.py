"""Benchmark (ai): one patch alone against two together through the network, per patch, on this CPU.

PyTorch's CPU convolution runs a batch of one small 3D input through its im2col path instead of oneDNN's, which
decides what ``inference.WINDOW_BATCH`` saves in whole-CT passes (sliding-window inference and the replay buffer's
bottleneck pass). Alternates the two batch sizes in one process, so their ratio is measured under the same load.
Then one whole-CT pass (``sliding_window_outputs``, 8 filters, 48³, 45 windows: the last pair holds one) with its lone
last window run beside a copy (``inference.padded_to_window_batch``, the engine's way) and alone, alternately.

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
import ciss_engine.inference as inference  # noqa: E402
from ciss_engine.network import NetworkConfig, build_network  # noqa: E402

# (init_filters, patch side): the tests' and phantom benchmarks' networks, and `ciss train`'s default.
CONFIGS = ((8, 32), (8, 48), (16, 64))
ODD_PASS_SHAPE = (144, 96, 96)  # 5 × 3 × 3 windows of 48³ at overlap 0.5


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
    whole_ct_pass(args.repeats)


def whole_ct_pass(repeats: int) -> None:
    """Seconds of one whole-CT pass with the lone last window beside a copy and alone (the helper bypassed)."""
    torch.manual_seed(0)
    network = build_network(NetworkConfig(init_filters=8, out_channels=5)).eval()
    image = torch.rand(1, 1, *ODD_PASS_SHAPE)
    beside_a_copy = inference.padded_to_window_batch
    alone = lambda patches, pad: (patches, patches.shape[0])  # noqa: E731
    seconds = {"beside a copy": [], "alone": []}
    for _ in range(repeats + 1):  # the first round warms up
        for name, helper in (("beside a copy", beside_a_copy), ("alone", alone)):
            inference.padded_to_window_batch = helper
            start = time.perf_counter()
            inference.sliding_window_outputs(network, image, patch_size=(48, 48, 48), device=torch.device("cpu"))
            seconds[name].append(time.perf_counter() - start)
    inference.padded_to_window_batch = beside_a_copy
    copy, lone = (sum(seconds[name][1:]) / repeats for name in ("beside a copy", "alone"))
    print(f"\nwhole-CT pass, {ODD_PASS_SHAPE} voxels, 45 windows: last window beside a copy {copy:.2f} s, alone {lone:.2f} s ({lone / copy:.3f} ×)")


if __name__ == "__main__":
    main()
