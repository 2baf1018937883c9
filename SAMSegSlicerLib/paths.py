"""Per-user folders for model files and the embedding cache.

``SAMSEG_HOME`` moves them all; ``SAMSEG_MODEL_DIR``, ``SAMSEG_CACHE_DIR`` and ``SAMSEG_COMPILED_DIR``
move each one (the last holds the compiled encoders, see :mod:`.models.compiled_encoder`).
Defaults: ``$XDG_CACHE_HOME/samseg`` (``~/.cache/samseg``) on Linux,
``~/Library/Caches/samseg`` on macOS and ``%LOCALAPPDATA%\\samseg`` on Windows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def samseg_home() -> Path:
    if os.environ.get("SAMSEG_HOME"):
        return Path(os.environ["SAMSEG_HOME"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "samseg"


def model_dir() -> Path:
    return Path(os.environ["SAMSEG_MODEL_DIR"]).expanduser() if os.environ.get("SAMSEG_MODEL_DIR") \
        else samseg_home() / "models"


def embedding_cache_dir() -> Path:
    return Path(os.environ["SAMSEG_CACHE_DIR"]).expanduser() if os.environ.get("SAMSEG_CACHE_DIR") \
        else samseg_home() / "embeddings"


def compiled_encoder_dir() -> Path:
    return Path(os.environ["SAMSEG_COMPILED_DIR"]).expanduser() if os.environ.get("SAMSEG_COMPILED_DIR") \
        else samseg_home() / "compiled"


def sample_data_dir() -> Path:
    return samseg_home() / "samples"
