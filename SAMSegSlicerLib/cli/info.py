"""``samseg info IMAGE``: geometry, intensity range and slice counts of a volume."""

from __future__ import annotations

import json

from ..window import resolve_window
from .common import open_volume


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="describe a volume (geometry, slices, window)")
    parser.add_argument("image", help="NIfTI, NRRD, MHA/MHD file or DICOM folder")
    parser.add_argument("--window", default="auto", help="window to report (default auto)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    volume = open_volume(args.image)
    description = volume.describe()
    description["window"] = resolve_window(args.window, volume.voxels_kji, volume.modality).describe()
    print(json.dumps(description, indent=2))
    return 0
