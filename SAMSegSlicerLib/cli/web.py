"""``samseg web [IMAGE | DICOM_FOLDER]``: annotate in a browser, on Slicer's views (trame-slicer)."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

from ..errors import InputError

LOOPBACK = "127.0.0.1"


def register(subparsers) -> None:
    parser = subparsers.add_parser("web", help="annotate in a browser on Slicer's own views (needs the web extra)")
    parser.add_argument("image", nargs="?", help="a volume file or DICOM folder to open at start (read only)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--host", default=LOOPBACK,
                        help=f"address to listen on (default {LOOPBACK}: this machine only)")
    parser.add_argument("--data-dir", default=".",
                        help="the only folder the page may open, upload into and save to (default: here)")
    parser.add_argument("--3d", dest="with_3d", action="store_true", help="show the 3-D view too (slower on a CPU)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    if not 0 < args.port < 65536:
        raise InputError(f"port {args.port} is not a TCP port", None, "use 1..65535")
    data_dir = Path(args.data_dir).expanduser()
    if not data_dir.is_dir():
        raise InputError("the data folder does not exist", str(data_dir), "create it or give another --data-dir")
    image = None
    if args.image is not None:
        image = Path(args.image).expanduser().resolve()
        from ..volume import read_volume

        read_volume(image)  # one clear error before the server starts
    try:
        import trame_slicer  # noqa: F401
    except ImportError:
        raise InputError("the web app needs trame-slicer", None, 'install it: pip install "samsegslicer[web]"') \
            from None
    if not _is_loopback(args.host):
        print(f"samseg: warning: listening on {args.host}: anyone who can reach port {args.port} can read and write "
              f"under {data_dir.resolve()}", file=sys.stderr)
    # The model first: importing torchvision pulls in triton, whose LLVM crashes the process when Mesa's (loaded by
    # the first offscreen render window) is already there; loaded this way round both work.
    from ..factory import EngineOptions, open_model
    from ..models.compiled_encoder import build_after_every_load

    # Each model loaded gets its compiled CPU encoder built once per machine, in the background (eager meanwhile).
    build_after_every_load(on_status=lambda line: print(f"samseg: {line}", file=sys.stderr, flush=True))
    model = open_model(EngineOptions())
    # No X display on a server: VTK renders offscreen through EGL.
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    from ..web.web_app import SamSegWebApp

    app = SamSegWebApp(data_dir, image=image, with_3d=args.with_3d, model=model)
    print(f"samseg: serving http://{args.host}:{args.port}/ (data folder {data_dir.resolve()}); Ctrl-C stops",
          file=sys.stderr, flush=True)
    # timeout=0: the server keeps running when the last page closes (trame stops after a while by default).
    app.server.start(host=args.host, port=args.port, open_browser=False, show_connection_info=False, timeout=0)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
