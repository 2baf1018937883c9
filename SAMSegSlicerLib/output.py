"""Verified atomic writes: the one place that writes every file samseg produces.

:func:`check_output` runs before any work: the folder exists and takes a file, the path is not a
folder, has a suffix the writer knows and is none of the command's inputs (also through links).
:func:`write_verified` writes into a temporary file beside the target, reads it back and checks it,
flushes it to disk, gives it the permissions the umask allows and only then renames it over the
target.  A full disk, a short write or a file that reads back differently raises one
:class:`OutputError` and leaves an earlier file at the target untouched.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import OutputError

KEEP_HINT = "nothing was written and an earlier file there is kept; free some space or choose another folder"


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same resolved path, or one file through a hard link."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                 suffixes: tuple[str, ...] | None = None) -> Path:
    """Fail before any work when ``path`` cannot or must not be written."""
    out = Path(path)
    for source in inputs:
        if same_file(out, source):
            raise OutputError("output would overwrite an input", str(out), "choose another output file")
    if suffixes is not None and not out.name.endswith(suffixes):
        raise OutputError("unsupported output file type", str(out), f"use {', '.join(suffixes)}")
    if out.is_dir():
        raise OutputError("output path is a folder", str(out), "give a file name")
    if not out.parent.is_dir():
        raise OutputError("output folder does not exist", str(out.parent), "create it first")
    try:
        handle, probe = tempfile.mkstemp(prefix=".samseg-probe-", dir=out.parent)
    except OSError as error:
        raise OutputError(f"output folder is not writable ({error.strerror})", str(out.parent),
                          "choose a folder you can write to") from None
    os.close(handle)
    os.unlink(probe)
    return out


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_verified(path: str | os.PathLike, write_to: Callable[[Path], None],
                   problem_with: Callable[[Path], str | None]) -> Path:
    """``write_to(tmp)``, then ``problem_with(tmp)`` (None when the file is right), then rename over ``path``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError("output folder does not exist", str(path.parent), "create it first")
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith((".nii.gz", ".seg.nrrd")) else path.suffix
    try:
        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as error:
        raise _write_error(error, path) from None
    os.close(handle)
    tmp_path = Path(tmp_name)
    try:
        write_to(tmp_path)
        problem = problem_with(tmp_path)
        if problem is not None:
            raise OutputError(f"could not write the file ({problem})", str(path), KEEP_HINT)
        with open(tmp_path, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except OSError as error:
        raise _write_error(error, path) from None
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` at ``path``, read back and compared before it replaces anything."""

    def problem_with(tmp_path: Path) -> str | None:
        written = tmp_path.read_bytes()
        if written != data:
            return f"{len(written)} of {len(data)} bytes read back"
        return None

    return write_verified(path, lambda tmp_path: tmp_path.write_bytes(data), problem_with)


def _write_error(error: OSError, path: Path) -> OutputError:
    reason = "no space left on device" if error.errno == errno.ENOSPC else (error.strerror or str(error))
    return OutputError(f"could not write the file ({reason})", str(path), KEEP_HINT)
