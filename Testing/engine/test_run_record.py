"""run_record.py: the fields every kind of version records, written by one function for base, learn and adapt."""
from __future__ import annotations

from ciss_engine.api.bundle_record import StepRecord
from ciss_engine.training.loop import LoopResult
from ciss_engine.training.loop_config import LoopConfig
from ciss_engine.training.run_record import RUN_FINGERPRINT, history_entry, run_fingerprint, training_record

RESULT = LoopResult(iterations=7, seconds_per_iteration=0.5, last_losses={"dice_ce": 0.25}, peak_memory_mb=100.0)


def test_a_history_entry_reads_back_and_keeps_what_its_kind_adds():
    entry = history_entry(version="1.1.0", step=2, kind="incremental", organs=("liver",), data=("abc",), strategy="uniform",
                          parent_version="1.0.0", result=RESULT, metrics={"agreement_spleen": 0.97}, gradient_shares={"ce": 1.0})
    record = StepRecord.from_json(entry)
    assert (record.version, record.kind, record.organs, record.parent_version) == ("1.1.0", "incremental", ("liver",), "1.0.0")
    assert entry["iterations"] == RESULT.iterations and entry["losses"] == RESULT.last_losses and entry["data_sha256"] == ["abc"]
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
