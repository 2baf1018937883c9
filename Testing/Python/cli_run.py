"""Running the ``samseg`` command line in the test process, as the CLI and fault tests do."""

from __future__ import annotations

from SAMSegSlicerLib.cli import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``samseg ARGV...``: the exit code and what it printed on stdout and stderr."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The one ``samseg: error:`` line on stderr (and no traceback): what every bad input must give."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("samseg: error:")]
    assert len(lines) == 1, err
    return lines[0]
