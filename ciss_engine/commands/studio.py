"""``ciss studio``: the clinical workflow in a web browser (trame-slicer); see docs/studio.md.

The studio is imported inside ``run`` only: building the ``ciss`` parser must not load trame or VTK.
"""
from __future__ import annotations

import argparse

from ..events import EventSink


def port_number(text: str) -> int:
    """``type=`` validator of ``--port``: 0 (any free port) or 1-65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535 (0 = any free port), got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ciss_studio.serve import serve_studio

    serve_studio(bundle=args.bundle, ct=args.ct, host=args.host, port=args.port, image_format=args.image_format, sink=sink,
                 token=args.token)
