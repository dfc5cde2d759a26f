"""``mitodet view``: review a detect output folder in the browser (``docs/viewer.md``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mitodet.commands._common import fail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "view",
        help="review detections in the browser: zoom, threshold, correct, save",
        description="Serve a `mitodet detect` output folder (and the images it records) as a local web page: the "
        "tissue with every detection, a threshold slider with the live read-out, layers, a gallery, and corrections "
        "saved as NAME.reviewed.geojson. Binds to 127.0.0.1 unless --host says otherwise.",
    )
    p.add_argument("out", type=Path, help="the --out folder of a `mitodet detect` run")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this computer only; 0.0.0.0: the network)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from mitodet.viewer.app import create_app
    except ImportError as exc:
        return fail(
            "view", f"the viewer needs Flask and OpenSlide's Python package ({exc}); pip install 'mitodet[view]'"
        )
    if not 0 <= args.port <= 65535:
        return fail("view", f"--port must be 0-65535, got {args.port}")
    try:
        app = create_app(args.out)
    except ValueError as exc:
        return fail("view", str(exc))
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):  # one line per failed request, not one per tile
        def log_request(self, code="-", size="-"):
            if str(code)[:1] in ("4", "5"):
                super().log_request(code, size)

    try:
        server = make_server(args.host, args.port, app, threaded=True, request_handler=Quiet)
    except OSError as exc:
        return fail("view", f"cannot listen on {args.host}:{args.port} ({exc}); pick another --port")
    host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    print(
        f"mitodet view: http://{host}:{server.server_port}/  (serving {args.out.resolve()}; Ctrl+C stops)", flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
