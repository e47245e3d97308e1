"""``ciss-studio`` without a browser: its flags, a port already in use, and a process free of torch."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from studio_process import REPO_ROOT, run_studio, studio_env

from ciss_engine.errors import ExitCode
from ciss_studio.cli import build_parser

# Builds the real app, opens a bundle and a CT, segments through the engine process, then lists heavy modules.
NO_TORCH_SCRIPT = """
import json, sys
from ciss_studio.serve import prepare_environment
prepare_environment()
from trame_server.utils.asynchronous import get_event_loop
from ciss_studio.app import StudioApp

app = StudioApp()
app.data.open_bundle(sys.argv[1])
app.data.open_ct(sys.argv[2])
app.segment.segment()

async def until_idle():
    import asyncio
    while app.status.is_busy:
        await asyncio.sleep(0.1)

get_event_loop().run_until_complete(until_idle())
app.shutdown()
print(json.dumps({"results": list(app.context.session.results), "error": app.status.data.error,
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "monai"))}))
"""


def test_defaults_serve_this_computer_only_on_port_8080():
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.bundle, args.ct, args.image_format, args.token) == ("127.0.0.1", 8080, None, None, "jpeg", None)


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_an_invalid_port_is_refused_saying_what_is_allowed(port, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--port", port])
    assert exit_info.value.code == ExitCode.USAGE_ERROR
    assert "1 to 65535" in capsys.readouterr().err


def test_a_port_in_use_fails_fast_naming_the_port_and_the_fix():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        completed = run_studio("--port", str(port), "--progress", "jsonl")
    assert completed.returncode == ExitCode.INPUT_ERROR, completed.stderr[-2000:]
    error = json.loads(completed.stdout.strip().splitlines()[-1])
    assert error["event"] == "error" and f"port {port}" in error["message"] and "already in use" in error["message"]
    assert "--port" in error["hint"]


def test_the_studio_process_never_imports_torch(tiny_bundle, phantom_cohort):
    completed = subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT, str(tiny_bundle), str(phantom_cohort[2] / "image.nii.gz")],
                               capture_output=True, text=True, env=studio_env(), cwd=REPO_ROOT.parent, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["results"] == ["1.0.0"] and not report["error"], report
    assert report["heavy"] == [], "the studio must leave torch and MONAI to the engine process"
