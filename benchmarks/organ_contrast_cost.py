"""What organ contrast costs a base-training iteration: the sampler's augmented batches on a real CT with and
without it, timed alternately in one process (RESULTS.md (aa)). Share 1 makes every patch pay; the default share
pays that fraction on average.

Usage: OMP_NUM_THREADS=1 python benchmarks/organ_contrast_cost.py [--batches 60] [--patch-size 48]
"""
from __future__ import annotations

import argparse
import time

from ciss_engine.demo_data import default_data_dir
from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.preprocessing import PreprocessingConfig
from ciss_engine.training.augmentation import OrganContrast
from ciss_engine.training.cases import prepare_cases
from ciss_engine.training.sampler import PatchSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--patch-size", type=int, default=48)
    args = parser.parse_args()
    ct = default_data_dir() / "ct" / "ts_abdpelvis"
    patch = (args.patch_size,) * 3
    cases = prepare_cases([ct / "image.nii.gz"], [ct / "label_seg8.nii.gz"], value_to_class={1: 1, 2: 2, 3: 3, 4: 4}, other_labels="background",
                          config=PreprocessingConfig(patch_size=patch), sink=EventSink(ProgressMode.QUIET))
    samplers = {
        "augmentation": PatchSampler(cases, num_classes=5, patch_size=patch, batch_size=2, seed=0, augment=True),
        "augmentation + organ contrast on every patch": PatchSampler(cases, num_classes=5, patch_size=patch, batch_size=2, seed=0, augment=True,
                                                                     organ_contrast=OrganContrast(1.0, (1, 2, 3))),
    }
    seconds = dict.fromkeys(samplers, 0.0)
    for index in range(args.batches):
        for name, sampler in samplers.items():
            start = time.perf_counter()
            sampler.batch(index)
            seconds[name] += time.perf_counter() - start
    plain = seconds["augmentation"]
    print(f"ts_abdpelvis, 3 mm, patch {args.patch_size}³, batch 2, {args.batches} batches each, alternating")
    print("| sampler | ms a batch | ratio |\n|---|---:|---:|")
    for name, total in seconds.items():
        print(f"| {name} | {1000 * total / args.batches:.1f} | {total / plain:.2f} |")


if __name__ == "__main__":
    main()
