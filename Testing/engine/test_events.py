import io
import json

from ciss_engine.events import EventSink, ProgressMode


def test_jsonl_progress_is_throttled_but_keeps_the_last_step():
    out = io.StringIO()
    sink = EventSink(ProgressMode.JSONL, stdout=out, stderr=io.StringIO())
    for step in range(1, 1001):
        sink.progress("train", step, 1000, loss=float("nan") if step == 1 else 0.5)
    sink.done(bundle="b")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    assert 2 <= len(progress) <= 101  # at most one per 1 % (the loop is far faster than 1 s)
    assert progress[0]["loss"] is None  # NaN is not valid JSON
    assert progress[-1]["step"] == 1000 and events[-1] == {"event": "done", "bundle": "b"}


def test_logs_go_to_stderr_and_quiet_prints_nothing():
    out, err = io.StringIO(), io.StringIO()
    EventSink(ProgressMode.JSONL, stdout=out, stderr=err).log("hello")
    assert out.getvalue() == "" and err.getvalue() == "hello\n"
    out, err = io.StringIO(), io.StringIO()
    quiet = EventSink(ProgressMode.QUIET, stdout=out, stderr=err)
    quiet.log("x")
    quiet.progress("train", 1, 2)
    quiet.done()
    assert out.getvalue() == err.getvalue() == ""
