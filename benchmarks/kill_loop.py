"""Benchmark (f): kill -9 in a long loop. ``ciss train``, ``ciss learn`` and ``ciss rollback`` are SIGKILLed at
random points (fixed seed) many times; after each kill the bundle must open with its current version intact,
and the command run again (``--resume``) must finish with a model bit-identical to an uninterrupted run's.
A share of the resumed runs is killed once more before the last, uninterrupted one (a crash while
recovering from a crash). The suite runs the same checks for 10 points a command (Testing/engine/test_kill_loop.py).

Points: the write path's fault points (``CISS_FAULT_POINT``, any occurrence) and event counts (the kill
lands wherever the run is by then). Runs are processes forked from a warm interpreter (Testing/engine_forks.py).

Usage: python benchmarks/kill_loop.py [--kills 30] [--seed 0] [--output benchmarks/output/kill_loop]
Prints a markdown table (kills, survived, what the next run found) and writes kill_loop.json.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Testing"))
os.environ["OMP_NUM_THREADS"] = "1"

from crash_consistency import (  # noqa: E402
    PUBLICATION_POINTS, assert_current_version_intact, assert_nothing_left_over, assert_same_model, finish, kill_run, learn_argv, model_of,
    train_argv,
)
from engine_forks import EngineForks  # noqa: E402

from ciss_engine.bundle import Bundle  # noqa: E402
from ciss_engine.phantom import write_cohort  # noqa: E402

ITERATIONS = ["--iterations", "6", "--checkpoint-every", "2"]  # checkpoints at iterations 2 and 4
# What the run after a kill says it found (its log lines), for the table.
FINDINGS = {
    "resuming": "resumed from its checkpoint",
    "starts from the beginning": "no checkpoint yet: started over",
    "it is current now": "finished the killed run's publication",
    "had already written": "found its version already written",
    "taking over the lock": "took over the killed run's lock",
}


def last_event_to_kill_after(events: list[dict]) -> int:
    """Kills after later events than the start of the final prototype pass could come after the run's end."""
    return next(i for i, e in enumerate(events) if e.get("stage") == "prototypes")


def draw_point(rng: random.Random, last_event: int, version: str) -> str | int:
    """A fault point (either checkpoint write) or an event count, half and half."""
    if rng.random() < 0.5:
        return rng.randint(1, last_event)
    return rng.choice(["locked", f"replace:checkpoint.pt#{rng.randint(1, 2)}", *(p.format(version=version) for p in PUBLICATION_POINTS)])


def survive(forks: EngineForks, command: list, root: Path, point: str | int, second_points: list[str], rng: random.Random, check) -> tuple[list[str], int]:
    """Kill at ``point`` and check; in 30 % of the cases kill the next run too, at one of ``second_points`` if it
    gets there, and check; then run to the end. The lines of the runs after the first kill, and their kills."""
    kill_run(forks, command, point)
    check(root)
    again = [*command, "--resume"] if command[0] != "rollback" else command
    lines, kills = [], 1
    if rng.random() < 0.3:  # a crash while recovering from a crash
        second = forks.run(*again, env={"CISS_FAULT_POINT": rng.choice(second_points)})
        if second.kill_at_fault_point() is not None:
            kills += 1
            check(root)
        else:
            assert second.code == 0, second.lines[-5:]
        lines += second.lines
    return lines + finish(forks, again), kills


def findings(lines: list[str]) -> list[str]:
    return [finding for phrase, finding in FINDINGS.items() if any(phrase in line for line in lines)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=30, help="kills per command (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "output" / "kill_loop")
    args = parser.parse_args()
    out = args.output
    shutil.rmtree(out, ignore_errors=True)
    cohort = write_cohort(out / "data", 3, args.seed, shape=(56, 48, 40), spacing=(6.0, 6.0, 6.0))
    seg8 = nib.load(str(cohort[2] / "label_seg8.nii.gz"))
    pancreas = out / "data" / "pancreas.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(seg8.dataobj) == 6).astype(np.uint8), seg8.affine), str(pancreas))
    forks = EngineForks(env={"XDG_STATE_HOME": str(out / "state")})
    rng = random.Random(args.seed)
    started = time.monotonic()

    train = lambda root: train_argv(cohort[0], root, *ITERATIONS)  # noqa: E731
    learn = lambda root: learn_argv(root, cohort[2] / "image.nii.gz", pancreas, *ITERATIONS)  # noqa: E731
    reference_train = forks.run(*train(out / "trained"))
    assert reference_train.wait() == 0
    shutil.copytree(out / "trained", out / "learned")
    reference_learn = forks.run(*learn(out / "learned"))
    assert reference_learn.wait() == 0

    def no_bundle_or_intact(root: Path) -> None:
        if (root / "bundle.json").exists():
            assert_current_version_intact(root)

    results = []
    for kill in range(args.kills):
        for name in ("train", "learn", "rollback"):
            root = out / "runs" / f"{name}{kill}"
            if name == "train":
                command, version, events, reference = train(root), "1.0.0", last_event_to_kill_after(reference_train.events), out / "trained"
            elif name == "learn":
                shutil.copytree(out / "trained", root)
                command, version, events, reference = learn(root), "1.1.0", last_event_to_kill_after(reference_learn.events), out / "learned"
            else:
                shutil.copytree(out / "learned", root)
                target = rng.choice(["1.0.0", "1.1.0"])
                Bundle.open_or_raise(root).set_current("1.1.0" if target == "1.0.0" else "1.0.0")
                command, version, events, reference = ["rollback", "-b", root, "--to", target, "--progress", "jsonl"], target, 0, None
            second_points = ["locked", "replace:bundle.json"] if name == "rollback" else ["locked", *(p.format(version=version) for p in PUBLICATION_POINTS)]
            point = draw_point(rng, events, version) if name != "rollback" else rng.choice(second_points)
            record = {"command": name, "point": point}
            try:
                lines, kills = survive(forks, command, root, point, second_points, rng, no_bundle_or_intact)
                assert assert_current_version_intact(root) == version
                if reference is not None:
                    assert_same_model(model_of(root), model_of(reference))
                assert_nothing_left_over(root, ["1.0.0"] if name == "train" else ["1.0.0", "1.1.0"])
                record |= {"survived": True, "kills": kills, "found": findings(lines)}
            except AssertionError as error:
                record |= {"survived": False, "error": str(error)[:500]}
            results.append(record)
            shutil.rmtree(root, ignore_errors=True)
            print(json.dumps(record), flush=True)
    forks.close()
    summary = summarise(results, time.monotonic() - started)
    (out / "kill_loop.json").write_text(json.dumps({"seed": args.seed, "results": results, "summary": summary}, indent=2))
    print(table(summary))


def summarise(results: list[dict], seconds: float) -> dict:
    by_command: dict[str, dict] = {}
    for name in ("train", "learn", "rollback"):
        mine = [r for r in results if r["command"] == name]
        found = collections.Counter(f for r in mine for f in r.get("found", []))
        by_command[name] = {"kills": sum(r.get("kills", 1) for r in mine), "runs": len(mine),
                            "survived": sum(r["survived"] for r in mine), "found": dict(found)}
    return {"seconds": round(seconds), "commands": by_command}


def table(summary: dict) -> str:
    rows = ["| command | kills (incl. of resumed runs) | runs that survived | what the next run found |", "|---|---:|---:|---|"]
    for name, s in summary["commands"].items():
        found = ", ".join(f"{finding} {count}" for finding, count in sorted(s["found"].items(), key=lambda item: -item[1]))
        rows.append(f"| {name} | {s['kills']} | {s['survived']} of {s['runs']} | {found} |")
    return "\n".join(rows) + f"\n\n{summary['seconds']} s in all."


if __name__ == "__main__":
    main()
