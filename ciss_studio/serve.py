"""Starts the studio's web server: checks the port, prepares offscreen rendering, opens the start files.

The server binds to 127.0.0.1 unless told otherwise. The studio has no user accounts, so on any other
``--host`` every request must carry an access token (``access.py``, docs/studio_access.md); serving others
still belongs behind an HTTPS reverse proxy or a VPN, since the studio itself speaks plain HTTP.
"""
from __future__ import annotations

import errno
import os
import socket
import sys

from ciss_engine.api.events import ServerStarted
from ciss_engine.errors import InputError
from ciss_engine.events import EventSink

from .access import TokenGate, address_with_token, is_loopback, resolve_token


def port_in_use_error(host: str, port: int) -> InputError:
    return InputError(
        f"port {port} on {host} is already in use",
        f"another program (perhaps another studio) listens there: stop it, or choose a free port, e.g. `ciss-studio --port {port + 1}` "
        "(--port 0 picks any free port)",
    )


def check_port_or_raise(host: str, port: int) -> None:
    """Fail before building the app when ``host:port`` cannot be served (in use, no permission, unknown host)."""
    try:
        probe = socket.create_server((host, port))  # SO_REUSEADDR like the server: a port in TIME_WAIT is fine
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise port_in_use_error(host, port) from error
        raise InputError(
            f"cannot serve on {host}:{port}: {error.strerror or error}",
            "use an address of this computer for --host (127.0.0.1, or 0.0.0.0 for all networks) and a --port from 1024 to 65535",
        ) from error
    probe.close()


def prepare_environment() -> None:
    """Settings that must precede trame and VTK: trame must not parse ``ciss-studio``'s arguments as its own,
    and without a display VTK renders offscreen through EGL (Mesa on the CPU when there is no GPU)."""
    os.environ.setdefault("TRAME_ARGS", "")
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if sys.platform.startswith("linux") and headless:
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def browser_address(host: str, port: int) -> str:
    """The address a browser opens: this computer's name for a wildcard bind, IPv6 literals in brackets."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def serve_studio(*, bundle: str | None, ct: str | None, host: str, port: int, image_format: str, sink: EventSink,
                 token: str | None = None) -> None:
    """Serve until interrupted (Ctrl+C, SIGTERM); a running engine job is cancelled cleanly on the way out.

    ``token`` (``--token``, else ``$CISS_STUDIO_TOKEN``, else generated on a non-loopback ``host``) is then required by
    every request; it is checked, like the port, before the app is built."""
    token = resolve_token(host, token)
    check_port_or_raise(host, port)
    prepare_environment()
    import vtk

    from .app import StudioApp

    # Each view trame-slicer creates makes VTK 9.6 warn about a deprecated interactor event (not ours to fix).
    vtk.vtkObject.GlobalWarningDisplayOff()
    try:
        app = StudioApp(image_format=image_format, sink=sink)
    finally:
        vtk.vtkObject.GlobalWarningDisplayOn()
    with app.server.state:
        if bundle:
            app.status.guarded(app.data.open_bundle)(bundle)
        if ct:
            app.status.guarded(app.data.open_ct)(ct)

    gate = TokenGate(token, on_refused=sink.log) if token else None
    if gate is not None:  # trame hands over wslink's aiohttp server before it freezes its middlewares
        app.server.controller.on_server_bind.add(lambda wslink_server: gate.install(wslink_server.app))

    def on_ready(**_) -> None:
        if gate is not None and not gate.installed:  # fail closed: never serve a network address unguarded
            raise RuntimeError("the studio's access-token check was not installed in its web server")
        url = address_with_token(browser_address(host, app.server.port), token)
        sink.emit(ServerStarted(url=url, host=host, port=app.server.port, token_required=gate is not None))
        sink.log(f"CISS Studio: open {url} in a web browser (Ctrl+C stops it)")
        if not is_loopback(host):
            sink.log("CISS Studio: plain HTTP carries the token and the images unencrypted: let others in through an "
                     "HTTPS reverse proxy or a VPN (docs/studio_access.md)")

    app.server.controller.on_server_ready.add(on_ready)
    app.server.controller.on_server_exited.add(lambda **_: app.shutdown())
    try:
        app.server.start(host=host, port=port, open_browser=False, show_connection_info=False, timeout=0, backend="aiohttp")
    except OSError as error:  # another program took the port after the check
        if error.errno == errno.EADDRINUSE:
            raise port_in_use_error(host, port) from error
        raise
