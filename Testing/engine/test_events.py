"""Events: the sink's throttling and streams, and the typed contract both front ends parse (ciss_engine/api/events.py)."""
import contextlib
import io
import json
import logging
import shutil

import nibabel as nib
import numpy as np
import pytest
from ciss_test_helpers import REPO_ROOT, TINY_TRAIN_ARGS, run_cli

from ciss_engine.api.events import (
    Done, ErrorEvent, EventKind, ForgettingGuard, LearnDone, Metric, Progress, RollbackDone, SegmentDone, UnknownEvent, WarningEvent,
    event_from_json, parse_event,
)
from ciss_engine.errors import ExitCode
from ciss_engine.events import EventSink, ProgressMode

STUDIO_KINDS = {EventKind.SERVER_STARTED, EventKind.JOB_STARTED, EventKind.JOB_FINISHED}


def test_jsonl_progress_is_throttled_but_keeps_the_last_step():
    out = io.StringIO()
    sink = EventSink(ProgressMode.JSONL, stdout=out, stderr=io.StringIO())
    for step in range(1, 1001):
        sink.progress("train", step, 1000, loss=float("nan") if step == 1 else 0.5)
    sink.done(RollbackDone(bundle="b", version="1.0.0", previous="1.1.0"))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    assert 2 <= len(progress) <= 101  # at most one per 1 % (the loop is far faster than 1 s)
    assert progress[0]["loss"] is None  # NaN is not valid JSON
    assert progress[-1]["step"] == 1000 and events[-1] == {"event": "done", "bundle": "b", "version": "1.0.0", "previous": "1.1.0"}


def test_logs_go_to_stderr_and_quiet_prints_nothing():
    out, err = io.StringIO(), io.StringIO()
    EventSink(ProgressMode.JSONL, stdout=out, stderr=err).log("hello")
    assert out.getvalue() == "" and err.getvalue() == "hello\n"
    out, err = io.StringIO(), io.StringIO()
    quiet = EventSink(ProgressMode.QUIET, stdout=out, stderr=err)
    quiet.log("x")
    quiet.progress("train", 1, 2)
    quiet.done(Done())
    assert out.getvalue() == err.getvalue() == ""


def test_typed_events_write_their_keys_in_order_and_extras_only_when_given():
    out = io.StringIO()
    sink = EventSink(ProgressMode.JSONL, stdout=out, stderr=io.StringIO())
    sink.progress("prepare", 1, 1)
    sink.warning("odd CT", "check it", file="ct.nii.gz")
    sink.error("boom", "fix it", exit_code=int(ExitCode.INPUT_ERROR))
    assert out.getvalue().splitlines() == [
        '{"event": "progress", "stage": "prepare", "step": 1, "total": 1, "eta_s": null}',
        '{"event": "warning", "message": "odd CT", "hint": "check it", "file": "ct.nii.gz"}',
        '{"event": "error", "message": "boom", "hint": "fix it", "exit_code": 3}',
    ]
    assert [parse_event(line) for line in out.getvalue().splitlines()] == [
        Progress(stage="prepare", step=1, total=1, eta_s=None), WarningEvent(message="odd CT", hint="check it", file="ct.nii.gz"),
        ErrorEvent(message="boom", hint="fix it", exit_code=3),
    ]


def test_lines_of_a_newer_engine_parse_and_what_is_unknown_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="ciss_engine.api.events"):
        unknown = parse_event('{"event": "tea_break", "minutes": 5}')
        extra = parse_event('{"event": "progress", "stage": "train", "step": 1, "total": 2, "eta_s": 3.0, "temperature": 0.5}')
        incomplete = parse_event('{"event": "forgetting_guard", "passed": true}')
    assert unknown == UnknownEvent(name="tea_break") and unknown.kind == "tea_break" and unknown.extra == {"minutes": 5}
    assert extra == Progress(stage="train", step=1, total=2, eta_s=3.0) and extra.extra == {"temperature": 0.5}
    assert extra.to_json()["temperature"] == 0.5  # kept, so a log line of the front end still shows it
    assert isinstance(incomplete, UnknownEvent) and incomplete.kind == EventKind.FORGETTING_GUARD
    assert all(word in caplog.text for word in ("tea_break", "temperature", "forgetting_guard"))


def test_every_engine_kind_is_documented():
    """A renamed kind must change the README's event list (what scripts of users parse) in the same commit."""
    events_section = (REPO_ROOT / "README.md").read_text(encoding="utf-8").split("### Events, cancel, exit codes")[1].split("###")[0]
    assert [kind for kind in set(EventKind) - STUDIO_KINDS if f"`{kind}`" not in events_section and f'"{kind}"' not in events_section] == []


def _stdout_lines(*args: object) -> tuple[int, list[str]]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = run_cli(*args, "--progress", "jsonl")
    return code, buffer.getvalue().splitlines()


@pytest.fixture(scope="module")
def engine_lines(tiny_bundle, phantom_cohort, tmp_path_factory) -> dict[str, list[str]]:
    """stdout of a tiny run of each command a front end starts (train with a checkpoint, learn, segment, rollback, a failure)."""
    root = tmp_path_factory.mktemp("contract")
    images = [c / "image.nii.gz" for c in phantom_cohort[:2]]
    labels = [c / "label_seg8.nii.gz" for c in phantom_cohort[:2]]
    seg8 = nib.load(str(phantom_cohort[2] / "label_seg8.nii.gz"))
    pancreas = root / "pancreas.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(seg8.dataobj) == 6).astype(np.uint8), seg8.affine), str(pancreas))
    bundle = root / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    runs = {
        "train": ("train", "-i", *images, "-l", *labels, "--organs", "spleen=1,kidney_right=2", "--other-labels", "background",
                  "-o", root / "trained", *TINY_TRAIN_ARGS, "--checkpoint-every", "2"),
        "learn": ("learn", "-b", bundle, "--organ", "pancreas", "-i", phantom_cohort[2] / "image.nii.gz", "-l", pancreas,
                  "--iterations", "2", "--batch-size", "1", "--accept-forgetting"),
        "segment": ("segment", "-b", bundle, "-i", images[0], "-o", root / "organs.nii.gz"),
        "rollback": ("rollback", "-b", bundle, "--to", "1.0.0"),
        "failed": ("segment", "-b", root / "missing", "-i", images[0], "-o", root / "none.nii.gz"),
    }
    lines = {}
    for name, args in runs.items():
        code, lines[name] = _stdout_lines(*args)
        assert code == (ExitCode.BUNDLE_ERROR if name == "failed" else ExitCode.OK), (name, lines[name][-1:])
    return lines


def test_every_event_the_engine_writes_parses_into_its_dataclass_and_back_to_the_same_line(engine_lines):
    kinds = set()
    for command, lines in engine_lines.items():
        for line in lines:
            event = parse_event(line, "segment" if command == "failed" else command)
            assert type(event) not in (UnknownEvent, Done, Metric), (command, line)  # a specific payload, every key known
            assert event.extra == {} and json.dumps(event.to_json()) == line, (command, line)
            kinds.add(event.kind)
    # Warnings come from a bad CT (the test above writes one) or a new organ learned poorly (the short learn step may
    # write one: new_organ_fit.py); every line written, a warning included, parsed and round-tripped above.
    assert kinds - {EventKind.WARNING} == set(EventKind) - STUDIO_KINDS - {EventKind.WARNING}


def test_what_the_front_ends_read_is_in_the_events(engine_lines):
    """The job runner and the workflows read these payloads (job_runner.py, workflow_logic.py, learn_logic.py)."""
    learned = [parse_event(line, "learn") for line in engine_lines["learn"]]
    done, guard = learned[-1], next(e for e in learned if isinstance(e, ForgettingGuard))
    assert isinstance(done, LearnDone) and done.version == guard.version == "1.1.0" and set(guard.agreement) == set(done.organs[:-1])
    assert any(isinstance(e, Progress) and e.loss is not None for e in learned)
    assert isinstance(parse_event(engine_lines["segment"][-1], "segment"), SegmentDone)
    error = event_from_json(json.loads(engine_lines["failed"][-1]))
    assert isinstance(error, ErrorEvent) and error.exit_code == ExitCode.BUNDLE_ERROR and error.hint
