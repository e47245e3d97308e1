"""``ciss-studio`` (or ``python -m ciss_studio``): the clinical workflow in a web browser (trame-slicer); see docs/studio.md.

The studio's own command, so that the engine never imports the studio; it reports errors and exit codes
through the engine's command contract (``ciss_engine.cli.run_command``). trame and VTK are imported when
the server starts, not when the arguments are parsed.
"""
from __future__ import annotations

import argparse
import sys

from ciss_engine.cli import add_progress_arguments, run_command
from ciss_engine.events import EventSink

PROGRAM = "ciss-studio"


def port_number(text: str) -> int:
    """``type=`` validator of ``--port``: 0 (any free port) or 1-65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535 (0 = any free port), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Serve the clinical workflow in a web browser: load, segment, paint a new organ, learn, compare, export.")
    parser.add_argument("-b", "--bundle", default=None, help="bundle folder to open at start (optional: it can be opened in the page)")
    parser.add_argument("--ct", default=None, help="CT to open at start: a NIfTI or NRRD file, or a DICOM series folder (optional)")
    parser.add_argument("--port", type=port_number, default=8080, help="TCP port to serve on (default 8080; 0 = any free port, printed at start)")
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this computer only). Any other address (e.g. 0.0.0.0) requires an "
        "access token, printed in the address to open; serve others through an HTTPS reverse proxy or a VPN (docs/studio_access.md)",
    )
    parser.add_argument(
        "--token", default=None,
        help="access token every request must carry (at least 16 letters, digits, '-', '_', '.' or '~'); default: $CISS_STUDIO_TOKEN, "
        "else a random one on a non-loopback --host and none on loopback. The environment variable keeps it out of `ps`",
    )
    parser.add_argument(
        "--image-format", choices=("jpeg", "png"), default="jpeg",
        help="how the views travel to the browser: jpeg (small, fast; default) or png (lossless, several times larger)",
    )
    add_progress_arguments(parser)
    return parser


def serve(args: argparse.Namespace, sink: EventSink) -> None:
    from .serve import serve_studio

    serve_studio(bundle=args.bundle, ct=args.ct, host=args.host, port=args.port, image_format=args.image_format, sink=sink,
                 token=args.token)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run_command(serve, build_parser().parse_args(argv), argv, program=PROGRAM)
