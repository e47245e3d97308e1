"""run_record.py: the fields every kind of version records, written by one function for base, learn and adapt."""
from __future__ import annotations

from pathlib import Path

import pytest
from ciss_engine.api.bundle_record import StepRecord
from ciss_engine.api.settings import parse_settings_or_raise
from ciss_engine.training.adapt import AdaptRequest
from ciss_engine.training.adapt import _fingerprint as adapt_fingerprint
from ciss_engine.training.incremental import LearnRequest
from ciss_engine.training.incremental import _fingerprint as learn_fingerprint
from ciss_engine.training.loop import LoopResult
from ciss_engine.training.loop_config import LoopConfig
from ciss_engine.training.run_record import RUN_FINGERPRINT, history_entry, run_fingerprint, training_record

RESULT = LoopResult(iterations=7, seconds_per_iteration=0.5, last_losses={"dice_ce": 0.25}, peak_memory_mb=100.0)


def test_a_history_entry_reads_back_and_keeps_what_its_kind_adds():
    entry = history_entry(version="1.1.0", step=2, kind="incremental", organs=("liver",), data=("abc",), organs_per_case=[("liver",)], strategy="uniform",
                          parent_version="1.0.0", result=RESULT, metrics={"agreement_spleen": 0.97}, gradient_shares={"ce": 1.0})
    record = StepRecord.from_json(entry)
    assert (record.version, record.kind, record.organs, record.parent_version) == ("1.1.0", "incremental", ("liver",), "1.0.0")
    assert entry["iterations"] == RESULT.iterations and entry["losses"] == RESULT.last_losses and entry["data_sha256"] == ["abc"]
    assert entry["organs_per_case"] == [["liver"]]
    assert entry["metrics"] == {"seconds_per_iteration": 0.5, "peak_memory_mb": 100.0, "agreement_spleen": 0.97}
    assert entry["gradient_shares"] == {"ce": 1.0}


def test_the_training_record_holds_the_schedule_and_the_runs_fingerprint():
    record = training_record(LoopConfig(iterations=9, cpu_bf16=True), batch_size=3, seed=4, fingerprint="f" * 64, loss="dice_ce")
    assert (record["iterations"], record["cpu_bf16"], record["batch_size"], record["seed"], record["loss"]) == (9, True, 3, 4, "dice_ce")
    assert record[RUN_FINGERPRINT] == "f" * 64


def test_the_fingerprint_changes_with_any_field_and_not_with_their_order():
    fields = {"parent": "1.0.0", "data": ["a"], "seed": 0}
    assert run_fingerprint(fields) == run_fingerprint(dict(reversed(list(fields.items()))))
    assert len({run_fingerprint({**fields, name: "other"}) for name in fields} | {run_fingerprint(fields)}) == len(fields) + 1


@pytest.mark.parametrize(("make_request", "fingerprint", "setting", "other"), [
    (LearnRequest, learn_fingerprint, "lambda_orcd", "1"), (AdaptRequest, adapt_fingerprint, "lambda_kd", "1")])
def test_a_steps_fingerprint_holds_the_settings_it_runs_with_defaults_filled_in(make_request, fingerprint, setting, other):
    """A run resumed after a release changed a default must not finish under other settings: the fingerprint holds every
    resolved setting, so naming a default changes nothing and another value changes it."""
    fields = {"bundle": Path("b"), "images": [Path("i")], "labels": [Path("l")], "loop": LoopConfig(iterations=5), "organs": [("liver", 1)]}
    implicit = make_request(**fields)
    default = getattr(parse_settings_or_raise(implicit.strategy, {}), setting)
    explicit = make_request(**fields, strategy_settings={setting: str(default)})
    changed = make_request(**fields, strategy_settings={setting: other})
    assert implicit.resolved_strategy()[setting] == default
    assert fingerprint(implicit, "1.0.0", ["d"]) == fingerprint(explicit, "1.0.0", ["d"])
    assert fingerprint(changed, "1.0.0", ["d"]) != fingerprint(implicit, "1.0.0", ["d"])
