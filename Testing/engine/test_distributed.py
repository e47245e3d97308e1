"""``torchrun … -m ciss_engine train``: two CPU processes (gloo) train one model, rank 0 alone reports and
writes, and a cancelled run resumes to exactly the model an uninterrupted one gives."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ciss_test_helpers import TINY_TRAIN_ARGS, run_cli

from ciss_engine.bundle import Bundle
from ciss_engine.errors import ExitCode
from ciss_engine.network import NetworkConfig, build_network
from ciss_engine.training.base import work_dir_for
from ciss_engine.training.distributed import DistributedContext

# Enough iterations that a SIGTERM sent after the first one lands well before the last.
ITERATIONS = 24


def _torchrun_train(cohort: list[Path], output: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ciss_engine", "train",
        "-i", *[str(c / "image.nii.gz") for c in cohort[:2]], "-l", *[str(c / "label_seg8.nii.gz") for c in cohort[:2]],
        "--organs", "spleen=1,liver=7", "--other-labels", "background", "-o", str(output),
        *TINY_TRAIN_ARGS, "--iterations", str(ITERATIONS), "--checkpoint-every", "1000", "--progress", "jsonl", *extra,
    ]


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _weights(bundle: Path) -> dict[str, torch.Tensor]:
    return Bundle.open_or_raise(bundle).load().load_state_dict()


@pytest.fixture(scope="module")
def two_process_bundle(tmp_path_factory: pytest.TempPathFactory, phantom_cohort: list[Path]) -> tuple[Path, list[dict]]:
    """A bundle trained by two torchrun processes without interruption, and rank 0's events."""
    output = tmp_path_factory.mktemp("distributed") / "bundle"
    result = subprocess.run(_torchrun_train(phantom_cohort, output), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return output, _events(result.stdout)


def test_two_processes_write_one_bundle_and_one_stream_of_events(two_process_bundle):
    output, events = two_process_bundle
    assert [e["event"] for e in events].count("done") == 1 and events[-1]["event"] == "done"
    # One rank reports: each training step appears once (a second rank would repeat step 1 and the last).
    train_steps = [e["step"] for e in events if e["event"] == "progress" and e["stage"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == ITERATIONS
    version = Bundle.open_or_raise(output).load()
    assert version.settings.training["world_size"] == 2 and version.history[-1]["world_size"] == 2
    network = build_network(NetworkConfig.from_json(version.settings.network))
    network.load_state_dict(version.load_state_dict())
    assert not work_dir_for(output).exists()


def test_sigterm_stops_every_rank_and_resume_gives_the_uninterrupted_model(tmp_path, phantom_cohort, two_process_bundle):
    output = tmp_path / "bundle"
    process = subprocess.Popen(_torchrun_train(phantom_cohort, output), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    events = []
    for line in process.stdout:
        events += _events(line)
        if events and events[-1].get("stage") == "train":
            break
    process.send_signal(signal.SIGTERM)
    events += _events(process.communicate(timeout=300)[0])
    assert process.returncode != 0  # torchrun's own code; the engine's is in the error event
    saved = [e for e in events if e["event"] == "checkpoint_saved"]
    errors = [e for e in events if e["event"] == "error"]
    assert len(saved) == 1 and 1 <= saved[0]["iteration"] < ITERATIONS
    assert len(errors) == 1 and errors[0]["exit_code"] == ExitCode.CANCELLED and "--resume" in errors[0]["hint"]
    assert not output.exists() and (work_dir_for(output) / "checkpoint.pt").is_file()

    resumed = subprocess.run(_torchrun_train(phantom_cohort, output, "--resume"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming train at iteration {saved[0]['iteration']} of {ITERATIONS}" in resumed.stderr
    expected, got = _weights(two_process_bundle[0]), _weights(output)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


def test_other_commands_refuse_a_torchrun_launch(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SystemExit) as stop:
        run_cli("versions", "-b", tmp_path)
    assert stop.value.code == ExitCode.USAGE_ERROR
    assert "only `ciss train` runs distributed" in capsys.readouterr().err


def test_rank_0_keeps_the_seed_and_other_ranks_draw_their_own():
    seeds = [DistributedContext(rank=rank, world_size=3).rank_seed(7) for rank in range(3)]
    assert seeds[0] == 7 and len(set(seeds)) == 3
    assert DistributedContext().rank_seed(7) == 7
