"""The prompts file of ``samseg segment``: boxes and points per slice, in voxel IJK or RAS millimetres.

::

    {
      "frame": "ijk",                      # or "ras" (patient millimetres, Slicer's world frame)
      "prompts": [
        {"label": 5, "axis": "axial",
         "box": [[20, 17, 106], [79, 73, 106]],      # two opposite corners
         "positive": [[50, 40, 106]],                # optional object clicks
         "negative": [[70, 30, 106]]}                # optional background clicks
      ]
    }

Every point of one entry must lie on one slice of ``axis`` (within half a voxel); the slice is
found from the points, so no slice number is needed.  ``axis`` defaults to ``axial``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, PromptError
from .geometry import AXES
from .prompts import make_box
from .volume import MIN_SLICE_SIDE, Volume

FRAMES = ("ijk", "ras")
SLICE_TOLERANCE = 0.5


@dataclass(frozen=True)
class PromptEntry:
    """One entry of a prompts file, mapped onto a slice: coordinates in slice (row, col) pixels."""

    label: int
    axis: str
    index: int
    box_rc: np.ndarray | None
    positive_rc: np.ndarray
    negative_rc: np.ndarray


def _points(entry: dict, key: str, where: str) -> np.ndarray:
    value = entry.get(key, [])
    try:
        points = np.asarray(value, dtype=float).reshape(-1, 3)
    except OverflowError:
        raise InputError(f"{where}: '{key}' holds a number too large to be a coordinate", None,
                         "give voxel indices or millimetres") from None
    except (TypeError, ValueError):
        raise InputError(f"{where}: '{key}' must be a list of [x, y, z] points", None,
                         "see the prompts file format in the README") from None
    if not np.all(np.isfinite(points)):
        raise InputError(f"{where}: '{key}' holds a non-finite coordinate", None, "give numbers")
    return points


def entry_to_slice(entry: dict, frame: str, volume: Volume, where: str = "prompt") -> PromptEntry:
    """One prompts-file entry mapped onto its slice; ``where`` names it in error messages."""
    if not isinstance(entry, dict):
        raise InputError(f"{where} is not an object", None, "each prompt is {\"label\": N, \"box\": ...}")
    axis = entry.get("axis", "axial")
    if axis not in AXES:
        raise InputError(f"{where}: unknown axis {axis!r}", None, f"use one of {', '.join(AXES)}")
    label = entry.get("label")
    if not isinstance(label, int) or isinstance(label, bool) or not 0 < label < 65536:
        raise InputError(f"{where}: 'label' must be an integer 1..65535", None, "add \"label\": 1")
    box = _points(entry, "box", where)
    if len(box) not in (0, 2):
        raise InputError(f"{where}: 'box' needs exactly two corner points", None, "give [[x0,y0,z0],[x1,y1,z1]]")
    positive, negative = _points(entry, "positive", where), _points(entry, "negative", where)
    if not len(box) and not len(positive):
        raise InputError(f"{where} has neither a box nor a positive point", None, "add \"box\" or \"positive\"")
    every = np.concatenate([box, positive, negative])
    every_ijk = volume.ras_to_ijk(every) if frame == "ras" else every
    axes = volume.axes(axis)
    if min(axes.slice_shape) < MIN_SLICE_SIDE:
        raise InputError(f"{where}: the image's {axis} slices are {axes.slice_shape[0]}x{axes.slice_shape[1]} pixels, "
                         f"too small to segment", None, "use another axis")
    positions, every_rc = axes.ijk_to_index_rc(every_ijk)
    index = int(round(float(positions[0])))
    if np.any(np.abs(positions - index) > SLICE_TOLERANCE):
        raise InputError(f"{where}: its points are not on one {axis} slice (positions "
                         f"{', '.join(f'{p:.2f}' for p in positions)})", None,
                         f"give every point of one prompt the same {axis} slice coordinate")
    if not 0 <= index < axes.n_slices:
        raise InputError(f"{where}: {axis} slice {index} is outside the image (0..{axes.n_slices - 1})", None,
                         f"check the coordinates and the frame ({frame})")
    rows, cols = axes.slice_shape
    outside = (every_rc[:, 0] < -0.5) | (every_rc[:, 0] > rows - 0.5) | \
              (every_rc[:, 1] < -0.5) | (every_rc[:, 1] > cols - 0.5)
    if outside.any():
        raise InputError(f"{where}: point {every[int(np.argmax(outside))].tolist()} is outside the image", None,
                         f"check the coordinates and the frame ({frame})")
    box_rc = None
    if len(box):
        corners = every_rc[:2]
        box_rc = np.concatenate([corners.min(axis=0), corners.max(axis=0)]).astype(np.float32)
        try:  # the session's own check, before the model loads
            make_box(box_rc, axes.slice_shape)
        except PromptError as error:
            raise InputError(f"{where}: {error.what}", None, error.hint) from None
    first_positive, first_negative = len(box), len(box) + len(positive)
    return PromptEntry(label, axis, index, box_rc, every_rc[first_positive:first_negative],
                       every_rc[first_negative:])


def read_prompts(path: str, volume: Volume) -> list[PromptEntry]:
    """Parse and check a prompts file against ``volume``; every problem is one :class:`InputError`."""
    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise InputError("prompts file not found", path, "check the path") from None
    except OSError as error:
        raise InputError(f"prompts file cannot be read ({error.strerror})", path, "give a JSON file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"prompts file is not valid JSON ({error})", path, "see the format in the README") from None
    except RecursionError:
        raise InputError("prompts file is nested too deeply", path, "see the format in the README") from None
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), list):
        raise InputError("prompts file needs a \"prompts\" list", path, "see the format in the README")
    frame = data.get("frame", "ijk")
    if frame not in FRAMES:
        raise InputError(f"unknown frame {frame!r}", path, "use \"ijk\" (voxel indices) or \"ras\" (millimetres)")
    if not data["prompts"]:
        raise InputError("prompts file holds no prompts", path, "add at least one")
    return [entry_to_slice(entry, frame, volume, f"{path}: prompt {n}") for n, entry in enumerate(data["prompts"])]
