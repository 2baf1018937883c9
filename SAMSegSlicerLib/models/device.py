"""Device and precision choice."""

from __future__ import annotations

import ctypes
import os
import sys

from ..errors import ModelError

MALLOC_TUNING_ENV = "SAMSEG_MALLOC_TUNING"

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")


def choose_device(requested: str = "auto") -> str:
    """``auto``: CUDA, then Apple MPS, then CPU; an explicit choice must be available."""
    import torch

    requested = (requested or "auto").lower()
    if requested not in DEVICE_CHOICES and not requested.startswith("cuda:"):
        raise ModelError(f"unknown device {requested!r}", None, f"use one of {', '.join(DEVICE_CHOICES)}")
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_ok else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("CUDA was requested but no CUDA GPU is available", None, "use --device cpu or auto")
    if requested == "mps" and not mps_ok:
        raise ModelError("Apple MPS was requested but is not available", None, "use --device cpu or auto")
    return requested


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN runs bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_precision(device: str, requested: str = "auto") -> str:
    """The encoder's precision.  ``auto``: fp32 on CPUs without native bf16 (emulated bf16 was
    measured 70x slower there), bf16 where the CPU or GPU runs it natively, fp16 on older GPUs."""
    import torch

    requested = (requested or "auto").lower()
    if requested not in PRECISION_CHOICES:
        raise ModelError(f"unknown precision {requested!r}", None, f"use one of {', '.join(PRECISION_CHOICES)}")
    if requested != "auto":
        return requested
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks of up to 64 MiB for reuse instead of handing them back to
    the system (``mallopt`` M_MMAP_THRESHOLD 64 MiB, M_TRIM_THRESHOLD 256 MiB).

    Each CPU decode allocates and frees a few tensors of several MB; handed back, their pages
    fault in again on the next click, which cost about a quarter of a 3-box decode here
    (``Testing/benchmarks/bench_session.py`` with ``SAMSEG_MALLOC_TUNING=0`` for comparison).
    The price is that the process keeps its peak heap.  Linux/glibc only; set
    ``SAMSEG_MALLOC_TUNING=0`` to leave the allocator alone.  Returns whether it was applied.
    """
    if os.environ.get(MALLOC_TUNING_ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 64 << 20)) and bool(libc.mallopt(m_trim_threshold, 256 << 20))
