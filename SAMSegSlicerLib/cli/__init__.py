"""The ``samseg`` command line.  Each command is a module with ``register(subparsers)`` and ``run(args)``.

Every :class:`~SAMSegSlicerLib.errors.SamSegError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings

from ..errors import Cancelled, SamSegError
from ..worker import CancelToken, stop_shared_worker
from . import assist, auto, demo, embed, evaluate, info, models, propagate, segment, web

COMMANDS = [demo, models, info, embed, segment, propagate, auto, evaluate, assist, web]
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
INTERRUPT_WAIT_S = 10.0


class Parser(argparse.ArgumentParser):
    """Argument errors are one line too (argparse would print the usage first)."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"samseg: error: {message} — see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="samseg",
        description="Segment CT and MR volumes with Segment Anything models (LiteMedSAM by default).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or an argument error already printed
        return int(exit_.code or 0)
    args.cancel = CancelToken()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return _run(args)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)


def _run(args: argparse.Namespace) -> int:
    """The command; an interrupt (Ctrl-C: exit 130, SIGTERM: 143) cancels the torch thread's job through
    ``args.cancel`` and waits for it, so the process never exits while torch is still running."""
    try:
        return int(args.handler(args) or 0)
    except SamSegError as error:
        print(f"samseg: error: {error.one_line()}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Cancelled:
        print("samseg: cancelled", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as interrupt:
        args.cancel.cancel()
        try:
            stop_shared_worker(INTERRUPT_WAIT_S)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            pass
        print("samseg: interrupted; no output was written", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED
    except Exception as error:  # an internal error: one line, the traceback only on request
        if os.environ.get("SAMSEG_DEBUG"):
            raise
        print(f"samseg: internal error: {type(error).__name__}: {error} (set SAMSEG_DEBUG=1 for the traceback "
              "and report it)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
