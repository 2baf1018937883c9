"""User-facing errors: each carries what went wrong, which file, and what to do.

The CLI turns any :class:`SamSegError` into one line on stderr and exit code 2;
the Slicer module shows the same line in a message box.
"""

from __future__ import annotations


class SamSegError(Exception):
    """An error the user can act on (bad input, missing model, no network...)."""

    def __init__(self, what: str, path: str | None = None, hint: str | None = None):
        self.what = what
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = [self.what]
        if self.path:
            parts[0] = f"{self.what}: {self.path}"
        if self.hint:
            parts.append(self.hint)
        return " — ".join(parts)


class InputError(SamSegError):
    """An image, label map, prompt file or argument that cannot be used."""


class OutputError(SamSegError):
    """An output that cannot or must not be written (an input, a read-only folder, a full disk...)."""


class PromptError(SamSegError):
    """A prompt that cannot be applied (outside the slice, degenerate box, empty stroke...)."""


class ModelError(SamSegError):
    """An unknown model, a checkpoint that does not load or does not match its checksum."""


class DownloadError(SamSegError):
    """A download that failed (offline, server error, checksum mismatch)."""


class Cancelled(Exception):
    """Raised inside long operations when their cancel token is set."""
