"""Reading back the small safetensors files samseg writes (prompt adapters, presence models)."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InputError


def read_file(path: Path, what: str) -> bytes:
    """The file's bytes; an unreadable path is one :class:`~.errors.InputError` line naming ``what``."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise InputError(f"{what} cannot be read ({error.strerror or type(error).__name__})", str(path),
                         "check the path") from None


def metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors file's header (ValueError / TypeError when there is none)."""
    header_len = int.from_bytes(data[:8], "little")
    if not 0 < header_len <= len(data) - 8:
        raise ValueError("bad header length")
    found = json.loads(data[8:8 + header_len]).get("__metadata__")
    if not isinstance(found, dict):
        raise TypeError("no metadata")
    return found
