"""What the kill-loop and full-disk tests (and benchmarks/kill_loop.py) share: tiny command lines, where to
kill a run, and what "the bundle survived" means."""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import torch
from engine_forks import EngineForks

from ciss_engine.bundle import Bundle
from ciss_engine.commands.verify import verify_bundle

SIGKILL_EXIT = -9
TINY_RUN = ["--iterations", "3", "--checkpoint-every", "2", "--batch-size", "1", "--progress", "jsonl"]
# Smaller than the session's tiny bundle (16³ patches on an 8 mm grid): a kill loop starts dozens of runs.
TINY_NETWORK = ["--patch-size", "16", "--spacing", "8", "--init-filters", "8"]
# Where a publication can be cut: before and after each step that changes what a reader sees
# (fault_points.py); ``{version}`` is the version being written.
PUBLICATION_POINTS = ["replace:.publishing.json", "version:model", "rename:{version}", "replace:bundle.json", "version:published"]
WRITE_POINTS = ["locked", "replace:checkpoint.pt", *PUBLICATION_POINTS]


def train_argv(case: Path, output: Path | str, *extra: object) -> list:
    """``ciss train`` of spleen and liver on one phantom case, tiny."""
    return ["train", "-i", case / "image.nii.gz", "-l", case / "label_seg8.nii.gz", "--organs", "spleen=1,liver=7", "--other-labels", "background",
            "-o", output, *TINY_NETWORK, *TINY_RUN, *extra]


def learn_argv(bundle: Path | str, image: Path, labels: Path, *extra: object) -> list:
    """``ciss learn`` of the pancreas (label value 1 in ``labels``), tiny."""
    return ["learn", "-b", bundle, "--organ", "pancreas", "-i", image, "-l", labels, "--accept-forgetting", *TINY_RUN, *extra]


def kill_points(reference_events: list[dict], version: str, count: int, rng: random.Random) -> list[str | int]:
    """Every fault point of the write path, and the rest of ``count`` drawn from the events a run prints before
    its final prototype pass (an event count: the kill lands wherever the run is by then; later events could
    be the run's last)."""
    last = next(i for i, e in enumerate(reference_events) if e.get("stage") == "prototypes")
    points: list[str | int] = [p.format(version=version) for p in WRITE_POINTS][:count]
    return points + sorted(rng.sample(range(1, last + 1), count - len(points)))


def kill_run(forks: EngineForks, argv: list, point: str | int) -> list[str]:
    """Start ``argv`` and SIGKILL it at ``point`` (a fault point's name, or after that many events); its output."""
    if isinstance(point, str):
        run = forks.run(*argv, env={"CISS_FAULT_POINT": point})
        assert run.kill_at_fault_point() == point.partition("#")[0], f"the run never reached {point}: {run.lines[-5:]}"
    else:
        run = forks.run(*argv)
        assert run.kill_after_events(point) == SIGKILL_EXIT, f"the run ended before its kill after event {point}"
    return run.lines


def finish(forks: EngineForks, argv: list) -> list[str]:
    """Run ``argv`` to the end; it must succeed. Its output."""
    run = forks.run(*argv)
    assert run.wait() == 0, run.lines[-10:]
    return run.lines


def assert_current_version_intact(root: Path) -> str:
    """The bundle opens, every version's files match their checksums, the current one loads; its version."""
    bundle = Bundle.open_or_raise(root)
    current = bundle.load()
    current.load_state_dict()
    current.load_prototypes()
    assert [r["status"] for r in verify_bundle(root)] == ["ok"] * len(bundle.versions())
    return current.version


def model_of(root: Path) -> dict[str, torch.Tensor]:
    """The current version's weights and prototypes."""
    version = Bundle.open_or_raise(root).load()
    return {**version.load_state_dict(), **{f"prototypes.{k}": v for k, v in version.load_prototypes().items()}}


def assert_same_model(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"tensors differ from the uninterrupted run: {different[:5]}"


def assert_nothing_left_over(root: Path, versions: list[str]) -> None:
    """Only the pointer and complete versions: no lock, publication note, checkpoint, staging or temporary file."""
    assert sorted(p.name for p in root.iterdir()) == ["bundle.json", "versions"]
    assert sorted(p.name for p in (root / "versions").iterdir()) == versions


def tree_state(folder: Path) -> dict[str, str]:
    """Every file (its SHA-256) and folder (``<dir>``) under ``folder`` by relative path: what "unchanged" means."""
    return {
        path.relative_to(folder).as_posix(): "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(Path(folder).rglob("*"))
    }
