"""The ``samseg`` command line.  Each command is a module with ``register(subparsers)`` and ``run(args)``.

Every :class:`~SAMSegSlicerLib.errors.SamSegError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from ..errors import Cancelled, SamSegError
from . import assist, demo, embed, evaluate, info, models, propagate, segment

COMMANDS = [demo, models, info, embed, segment, propagate, evaluate, assist]
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


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


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or an argument error already printed
        return int(exit_.code or 0)
    try:
        return int(args.handler(args) or 0)
    except SamSegError as error:
        print(f"samseg: error: {error.one_line()}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Cancelled:
        print("samseg: cancelled", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("samseg: interrupted; no output was written", file=sys.stderr)
        return 130
    except Exception as error:  # an internal error: one line, the traceback only on request
        if os.environ.get("SAMSEG_DEBUG"):
            raise
        print(f"samseg: internal error: {type(error).__name__}: {error} (set SAMSEG_DEBUG=1 for the traceback "
              "and report it)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
