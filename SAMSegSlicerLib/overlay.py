"""PNG montages of slices with label overlays, for a person to look at."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .output import write_bytes
from .volume import Volume
from .window import IntensityWindow

PALETTE = np.array([(230, 60, 60), (60, 200, 90), (70, 130, 240), (240, 200, 40), (200, 80, 220),
                    (40, 210, 210)], dtype=np.float32)
TILE_PX = 256


def spread_slices(indices: list[int], count: int) -> list[int]:
    """Up to ``count`` slices evenly spread over ``indices`` (sorted)."""
    if len(indices) <= count:
        return sorted(indices)
    picks = np.linspace(0, len(indices) - 1, count).round().astype(int)
    return [sorted(indices)[p] for p in picks]


def _tile(image01: np.ndarray, labels_rc: np.ndarray, spacing_rc: tuple[float, float], title: str):
    from PIL import Image, ImageDraw

    rgb = np.repeat((image01 * 255.0)[..., None], 3, axis=2)
    for n, value in enumerate(v for v in np.unique(labels_rc) if v):
        mask = labels_rc == value
        color = PALETTE[n % len(PALETTE)]
        rgb[mask] = 0.55 * rgb[mask] + 0.45 * color
        edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
        rgb[edge] = color
    height_mm, width_mm = labels_rc.shape[0] * spacing_rc[0], labels_rc.shape[1] * spacing_rc[1]
    scale = TILE_PX / max(height_mm, width_mm)
    size = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))
    tile = Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).resize(size, Image.NEAREST)
    ImageDraw.Draw(tile).text((4, 4), title, fill=(255, 255, 0))
    return tile


def write_montage(path: str | Path, volume: Volume, window: IntensityWindow, labels_kji: np.ndarray, axis: str,
                  indices: list[int], columns: int = 3) -> Path:
    """One tile per slice in ``indices`` (windowed image, labels filled and outlined), written atomically."""
    from PIL import Image

    axes = volume.axes(axis)
    spacing_rc = axes.spacing_rc(volume.spacing_ijk)
    image_stack, label_stack = axes.stack(volume.voxels_kji), axes.stack(labels_kji)
    tiles = [_tile(window.apply(image_stack[i]), label_stack[i], spacing_rc, f"{axis} {i}") for i in indices]
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    width = max(t.size[0] for t in tiles)
    height = max(t.size[1] for t in tiles)
    sheet = Image.new("RGB", (columns * width, rows * height))
    for n, tile in enumerate(tiles):
        sheet.paste(tile, ((n % columns) * width, (n // columns) * height))
    png = io.BytesIO()
    sheet.save(png, format="PNG")
    return write_bytes(path, png.getvalue())
