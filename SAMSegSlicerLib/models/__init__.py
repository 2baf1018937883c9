"""The model zoo: specs, checkpoint files, loading and running SAM-family models."""

from .device import DEVICE_CHOICES, PRECISION_CHOICES, choose_device, choose_precision
from .download import checkpoint_path, checksum_matches, file_digest
from .registry import ARCHITECTURES, DEFAULT_MODEL, MODEL_SPECS, ModelSpec, resolve_spec
from .sam_model import ResizeInfo, SamModel, load_model, resize_info

__all__ = [
    "ARCHITECTURES", "DEFAULT_MODEL", "DEVICE_CHOICES", "MODEL_SPECS", "PRECISION_CHOICES", "ModelSpec",
    "ResizeInfo", "SamModel", "checkpoint_path", "checksum_matches", "choose_device", "choose_precision",
    "file_digest", "load_model", "resize_info", "resolve_spec",
]
