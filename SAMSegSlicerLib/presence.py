"""The presence model: where is the structure on a slice, judged from a few annotated slices.

SAM^Med's SAM^auto has two halves: prompt propagation (:mod:`.propagation`) and a *prompt
generator* learned from ~5 annotated slices (SAP-Net: prototypes of foreground/background
features, a slice-position encoding, a Dice loss biased against false positives, the top
components kept).  This module is that generator, built on what we already have: the image
embeddings in the cache (one 256-vector per 4x4 model pixels), so nothing is re-encoded and
building takes a fraction of a second.

From K annotated slices (K >= 1) :func:`build_presence` makes

* feature statistics of the annotated slices (every channel standardised, so that no channel
  with a large common offset dominates a distance),
* prototypes: the mean standardised feature under the masks (masked average pooling, PANet)
  and k-means centres of the features outside them (background is many tissues, not one),
* optionally (``PresenceOptions.head``; off by default: from one to three slices it learns the
  annotated slices too well and its identity check cut true slices, ct_abdomen_3mm 3 seeds
  0.886 against 0.945 without it) a light head: a linear classifier on the standardised features trained in a few
  hundred Adam steps with a Tversky loss that weighs false positives above false negatives
  (the paper's biased Dice: a coarse map that spills into a neighbour makes a bad prompt),
* optionally a position term: the masks' centroids and half-sizes per annotated slice,
  interpolated to any other slice, as a Gaussian prior over the slice.  Two kidneys have the
  same features; only where they are tells them apart.  It describes one volume, so it is
  dropped when the model is applied to another volume (:meth:`PresenceModel.for_other_volume`).

On any slice :func:`presence_on_slice` gives a coarse probability map on the slice's pixels,
a presence score (the map's mass relative to the annotated slices' mean area) and prompts for
the segmentation model: the box around the strongest components and an interior point.
:func:`mask_identity` scores how much a mask still looks like the annotated structure.
Models are saved as safetensors with the model they belong to and a checksum, like prompt
adapters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from .engine import SliceEngine
from .errors import InputError, ModelError
from .output import write_bytes
from .safetensors_file import metadata as safetensors_metadata
from .safetensors_file import read_file
from .worker import CancelToken

ProgressCallback = Callable[[int, int], None]  # (steps done, steps planned)
FORMAT = "samseg-presence-1"
TOKEN_PX = 4  # model input pixels per embedding cell (SAM and LiteMedSAM alike: 1024/64, 256/64)


@dataclass(frozen=True)
class PresenceOptions:
    """How :func:`build_presence` learns (defaults measured on ``ct_abdomen_3mm``, see the README)."""

    head: bool = False
    head_steps: int = 200
    learning_rate: float = 0.05
    false_positive_weight: float = 0.7  # Tversky alpha; false negatives weigh 1 - alpha
    weight_decay: float = 1e-3
    temperature: float = 10.0           # prototype similarities -> probability (used without a head)
    background_prototypes: int = 8
    position: bool = True
    position_spread: float = 1.5        # the prior's sigma in half-sizes of the annotated masks
    position_reach_mm: float = 60.0     # beyond the annotated slices the prior fades with this sigma (at least)
    threshold: float = 0.5
    components: int = 1                 # the strongest components kept for prompts (SAP-Net's top-K)
    seed: int = 0

    def __post_init__(self):
        if self.head_steps < 0 or self.background_prototypes < 1 or self.components < 1:
            raise InputError("presence options must be positive counts", None,
                             "give head steps >= 0, background prototypes >= 1, components >= 1")
        if not 0.0 < self.threshold < 1.0 or not 0.0 <= self.false_positive_weight <= 1.0:
            raise InputError("presence threshold must be in (0, 1), the false-positive weight in [0, 1]", None,
                             "e.g. threshold 0.5, weight 0.7")


@dataclass(frozen=True)
class Anchor:
    """Where the structure lies on one annotated slice: centroid and half-size in pixels."""

    index: int
    centre_rc: tuple[float, float]
    half_rc: tuple[float, float]


@dataclass
class PresenceModel:
    """What :func:`build_presence` learned about one structure (see the module docstring).

    ``foreground``: (P, C) and ``background``: (B, C) unit prototypes of standardised features;
    ``head``: (C + 1,) weights and bias, or None; ``anchors``: the position term (empty: none);
    ``mean_area_mm2``: the annotated masks' mean area; ``slice_mm``: the distance between slices.
    """

    model_weights: str
    axis: str
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    foreground: np.ndarray
    background: np.ndarray
    head: np.ndarray | None
    anchors: tuple[Anchor, ...]
    mean_area_mm2: float
    slice_mm: float
    options: PresenceOptions = field(default_factory=PresenceOptions)
    info: dict = field(default_factory=dict)

    @property
    def checksum(self) -> str:
        return _digest(self)

    def for_other_volume(self) -> PresenceModel:
        """The same model without the position term, for another volume of the same kind."""
        return replace(self, anchors=())

    def cell_probability(self, cells: np.ndarray) -> np.ndarray:
        """Probability that each (…, C) feature vector belongs to the structure (no position term)."""
        standard = (np.asarray(cells, np.float32) - self.feature_mean) / self.feature_scale
        if self.head is not None:
            return _sigmoid(standard @ self.head[:-1] + self.head[-1])
        unit = standard / (np.linalg.norm(standard, axis=-1, keepdims=True) + 1e-6)
        margin = (unit @ self.foreground.T).max(-1) - (unit @ self.background.T).max(-1)
        return _sigmoid(self.options.temperature * margin)

    def position_prior(self, index: int, shape_rc: tuple[int, int]) -> np.ndarray | None:
        """The Gaussian prior over a slice's pixels at slice ``index`` (None without anchors)."""
        if not self.anchors:
            return None
        centre, half = _interpolate_anchor(self.anchors, index)
        spread = self.options.position_spread
        rows = (np.arange(shape_rc[0]) - centre[0]) / max(1.0, spread * half[0])
        cols = (np.arange(shape_rc[1]) - centre[1]) / max(1.0, spread * half[1])
        # Along the axis the structure may reach well beyond the annotated slices (one seed is
        # usually its largest slice), so the prior fades slowly there: a sigma of the annotated
        # span or ``position_reach_mm``, whichever is longer.
        first, last = min(a.index for a in self.anchors), max(a.index for a in self.anchors)
        beyond_mm = max(0, first - index, index - last) * self.slice_mm
        reach_mm = max(self.options.position_reach_mm, (last - first) * self.slice_mm)
        along = np.exp(-0.5 * (beyond_mm / reach_mm) ** 2)
        return (along * np.exp(-0.5 * (rows[:, None] ** 2 + cols[None, :] ** 2))).astype(np.float32)


@dataclass(frozen=True)
class SlicePresence:
    """The presence model's view of one slice.

    ``probability_rc``: the coarse map on the slice's pixels (position prior included);
    ``score``: its mass above the threshold relative to the annotated slices' mean area (about
    1 on a slice like the annotated ones, 0 where the structure is absent); ``box_rc`` and
    ``points_rc``: prompts from the strongest components (None / empty when nothing is there).
    """

    axis: str
    index: int
    probability_rc: np.ndarray
    score: float
    box_rc: np.ndarray | None
    points_rc: np.ndarray

    @property
    def present(self) -> bool:
        return self.box_rc is not None


# --- grid <-> slice ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Grid:
    """The embedding cells that cover a slice (the rest of the square input is padding)."""

    cells_rc: tuple[int, int]
    resized_rc: tuple[int, int]
    original_rc: tuple[int, int]


def _grid(engine: SliceEngine, axis: str) -> _Grid:
    info = engine.model.resize_info(engine.slice_shape(axis))
    cells = tuple(int(np.ceil(r / TOKEN_PX)) for r in info.resized_rc)
    return _Grid(cells, info.resized_rc, info.original_rc)


def _cells(engine: SliceEngine, axis: str, index: int, grid: _Grid) -> np.ndarray:
    """The slice's embedding as (rows, cols, C) float32 cells (from the cache; encoded if missing)."""
    embedding = np.asarray(engine.embedding(axis, index))
    embedding = embedding.reshape(embedding.shape[-3:])[:, : grid.cells_rc[0], : grid.cells_rc[1]]
    return np.moveaxis(embedding.astype(np.float32), 0, -1)


def _mask_to_cells(mask_rc: np.ndarray, grid: _Grid) -> np.ndarray:
    """The share of each cell covered by the mask (area-weighted, as the encoder sees the slice)."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.asarray(mask_rc, np.float32))[None, None]
    tensor = F.interpolate(tensor, size=grid.resized_rc, mode="bilinear", align_corners=False)
    pad = (0, grid.cells_rc[1] * TOKEN_PX - grid.resized_rc[1], 0, grid.cells_rc[0] * TOKEN_PX - grid.resized_rc[0])
    return F.avg_pool2d(F.pad(tensor, pad), TOKEN_PX)[0, 0].numpy()


def _cells_to_slice(values_cells: np.ndarray, grid: _Grid) -> np.ndarray:
    """Cell values bilinearly on the slice's own pixels."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.asarray(values_cells, np.float32))[None, None]
    full = F.interpolate(tensor, scale_factor=TOKEN_PX, mode="bilinear", align_corners=False)
    full = full[..., : grid.resized_rc[0], : grid.resized_rc[1]]
    return F.interpolate(full, size=grid.original_rc, mode="bilinear", align_corners=False)[0, 0].numpy()


# --- building ------------------------------------------------------------------------------------
def build_presence(engine: SliceEngine, axis: str, annotated: Mapping[int, np.ndarray],
                   options: PresenceOptions | None = None, background_slices: Sequence[int] = (),
                   progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> PresenceModel:
    """Learn the presence of one structure from ``annotated`` (slice index -> bool mask_rc on ``axis``).

    ``background_slices``: slices known not to hold the structure (all their cells are
    background).  The slices are encoded first if they are not in the cache.  Deterministic for
    the same inputs and options; ``cancel`` stops between steps with :class:`~.errors.Cancelled`.
    """
    options = options or PresenceOptions()
    masks = _check_annotated(engine, axis, annotated)
    background_slices = sorted({int(z) for z in background_slices} - set(masks))
    engine.encode(axis, list(masks) + background_slices, cancel=cancel)
    grid = _grid(engine, axis)
    features, targets = [], []
    for index, mask in masks.items():
        features.append(_cells(engine, axis, index, grid).reshape(-1, _channels(engine)))
        targets.append(_mask_to_cells(mask, grid).reshape(-1))
    for index in background_slices:
        cells = _cells(engine, axis, index, grid).reshape(-1, _channels(engine))
        features.append(cells)
        targets.append(np.zeros(len(cells), np.float32))
    x = np.concatenate(features)
    y = np.concatenate(targets)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-3
    standard = (x - mean) / scale
    foreground = _unit(standard[y >= 0.5].mean(axis=0, keepdims=True))
    background = _kmeans(_unit(standard[y < 0.05]), options.background_prototypes, options.seed)
    head = None
    if options.head and options.head_steps > 0:
        head = _train_head(standard, y, options, progress, cancel)
    anchors = tuple(_anchor(index, mask) for index, mask in masks.items()) if options.position else ()
    axes = engine.volume.axes(axis)
    spacing_rc = axes.spacing_rc(engine.volume.spacing_ijk)
    slice_mm = float(engine.volume.spacing_ijk[axes.normal_ijk])
    mean_area_mm2 = float(np.mean([m.sum() for m in masks.values()]) * spacing_rc[0] * spacing_rc[1])
    info = {"annotated_slices": sorted(masks), "background_slices": background_slices, "cells": int(len(y))}
    return PresenceModel(_model_weights(engine), axis, mean.astype(np.float32), scale.astype(np.float32),
                         foreground, background, head, anchors, mean_area_mm2, slice_mm, options, info)


def _check_annotated(engine: SliceEngine, axis: str, annotated: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    if not annotated:
        raise InputError("no annotated slice to learn the structure from", None,
                         "annotate (or accept) the structure on at least one slice")
    shape = engine.slice_shape(axis)
    masks = {}
    for index, mask in sorted(annotated.items()):
        engine.volume.axes(axis).check_index(int(index))
        mask = np.asarray(mask, bool)
        if mask.shape != tuple(shape):
            raise InputError(f"mask on slice {index} is {mask.shape}, the slices are {tuple(shape)}", None,
                             "give masks on the slicing axis")
        if mask.any():
            masks[int(index)] = mask
    if not masks:
        raise InputError("every annotated slice is empty", None, "annotate the structure on at least one slice")
    return masks


def _channels(engine: SliceEngine) -> int:
    return int(engine.model.prompt_encoder.embed_dim)


def _model_weights(engine: SliceEngine) -> str:
    return engine.model.model_id.rsplit("/", 1)[0]


def _anchor(index: int, mask: np.ndarray) -> Anchor:
    rows, cols = np.nonzero(mask)
    return Anchor(int(index), (float(rows.mean()), float(cols.mean())),
                  ((rows.max() - rows.min() + 1) / 2.0, (cols.max() - cols.min() + 1) / 2.0))


def _interpolate_anchor(anchors: tuple[Anchor, ...], index: int):
    """Centre and half-size at ``index``: linear between the nearest anchors, the nearest one beyond them."""
    ordered = sorted(anchors, key=lambda a: a.index)
    if index <= ordered[0].index:
        return ordered[0].centre_rc, ordered[0].half_rc
    if index >= ordered[-1].index:
        return ordered[-1].centre_rc, ordered[-1].half_rc
    for below, above in zip(ordered, ordered[1:]):
        if below.index <= index <= above.index:
            t = (index - below.index) / (above.index - below.index)
            centre = tuple((1 - t) * b + t * a for b, a in zip(below.centre_rc, above.centre_rc))
            half = tuple((1 - t) * b + t * a for b, a in zip(below.half_rc, above.half_rc))
            return centre, half
    raise AssertionError("unreachable: index lies between the first and the last anchor")


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))).astype(np.float32)


def _kmeans(unit: np.ndarray, count: int, seed: int, iterations: int = 15) -> np.ndarray:
    """Spherical k-means centres of unit vectors (deterministic for ``seed``)."""
    count = min(count, len(unit))
    rng = np.random.default_rng(seed)
    centres = unit[rng.choice(len(unit), size=count, replace=False)]
    for _ in range(iterations):
        nearest = (unit @ centres.T).argmax(axis=1)
        centres = np.stack([_unit(unit[nearest == k].mean(axis=0)) if (nearest == k).any() else centres[k]
                            for k in range(count)])
    return centres.astype(np.float32)


def _train_head(standard: np.ndarray, target: np.ndarray, options: PresenceOptions,
                progress: ProgressCallback | None, cancel: CancelToken | None) -> np.ndarray:
    """A linear classifier on standardised cells, trained with a Tversky loss (false positives
    weigh ``false_positive_weight``) plus a little class-balanced BCE so that it converges from
    zero weights; returns (C + 1,) weights and bias."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(options.seed)
    x = torch.from_numpy(standard)
    y = torch.from_numpy(target.astype(np.float32))
    weights = (0.01 * torch.randn(x.shape[1], generator=generator)).requires_grad_(True)
    bias = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.Adam([weights, bias], lr=options.learning_rate)
    positive = float(y.mean().clamp(1e-4, 1 - 1e-4))
    balance = torch.where(y > 0.5, 0.5 / positive, 0.5 / (1 - positive))
    alpha = options.false_positive_weight
    with torch.enable_grad():
        for step in range(options.head_steps):
            if cancel is not None and step % 20 == 0:
                cancel.raise_if_cancelled()
            p = torch.sigmoid(x @ weights + bias)
            overlap = (p * y).sum()
            false_positive, false_negative = (p * (1 - y)).sum(), ((1 - p) * y).sum()
            tversky = 1 - (overlap + 1) / (overlap + alpha * false_positive + (1 - alpha) * false_negative + 1)
            loss = tversky + 0.3 * F.binary_cross_entropy(p, y, weight=balance) + \
                options.weight_decay * (weights ** 2).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if progress is not None and (step + 1) % 20 == 0:
                progress(step + 1, options.head_steps)
    return np.concatenate([weights.detach().numpy(), bias.detach().numpy()]).astype(np.float32)


# --- applying ------------------------------------------------------------------------------------
def check_model(engine: SliceEngine, model: PresenceModel) -> None:
    if model.model_weights != _model_weights(engine):
        raise ModelError(f"the presence model was built with {model.model_weights}, not with {_model_weights(engine)}",
                         None, "build it again with this model")
    if model.feature_mean.shape != (_channels(engine),):
        raise ModelError(f"the presence model has {model.feature_mean.shape[0]} channels, the model "
                         f"{_channels(engine)}", None, "build it again with this model")


def probability_cells(engine: SliceEngine, model: PresenceModel, axis: str, index: int) -> np.ndarray:
    """The coarse map on the embedding cells of one slice (without the position term)."""
    return model.cell_probability(_cells(engine, axis, index, _grid(engine, axis)))


def presence_on_slice(engine: SliceEngine, model: PresenceModel, axis: str, index: int) -> SlicePresence:
    """The coarse map, presence score and prompts on slice ``index`` (encoded if not in the cache)."""
    grid = _grid(engine, axis)
    probability = _cells_to_slice(probability_cells(engine, model, axis, index), grid)
    prior = model.position_prior(index, grid.original_rc)
    if prior is not None:
        probability = probability * prior
    return _prompts(axis, index, probability, model, engine.volume.axes(axis).spacing_rc(engine.volume.spacing_ijk))


def _prompts(axis: str, index: int, probability: np.ndarray, model: PresenceModel, spacing_rc) -> SlicePresence:
    above = probability >= model.options.threshold
    labels, count = ndimage.label(above)
    if count == 0:
        return SlicePresence(axis, index, probability, 0.0, None, np.zeros((0, 2)))
    mass = ndimage.sum(probability, labels, index=np.arange(1, count + 1))
    keep = np.argsort(mass)[::-1][: model.options.components] + 1
    kept = np.isin(labels, keep)
    pixel_mm2 = float(spacing_rc[0] * spacing_rc[1])
    score = float(probability[kept].sum() * pixel_mm2 / max(model.mean_area_mm2, 1e-6))
    rows, cols = np.nonzero(kept)
    box = np.array([rows.min(), cols.min(), rows.max(), cols.max()], dtype=float)
    depth = ndimage.distance_transform_edt(kept, sampling=spacing_rc)
    point = np.array(np.unravel_index(int(np.argmax(depth)), kept.shape), dtype=float)
    return SlicePresence(axis, index, probability, score, box, point[None, :])


def mask_identity(engine: SliceEngine, model: PresenceModel, axis: str, index: int, mask_rc: np.ndarray,
                  min_cells: float = 0.0) -> float | None:
    """How much a mask still looks like the annotated structure: the presence probability of its
    pooled feature (the mean standardised feature of the cells it covers, as the prototypes were
    made).  Near 1 for the structure, near 0 for another tissue; 0 for an empty mask.  None for a
    mask covering fewer than ``min_cells`` embedding cells (area-weighted): the pooled feature of a
    few cells is mostly the tissue around a small structure, too noisy to judge it by."""
    grid = _grid(engine, axis)
    cover = _mask_to_cells(mask_rc, grid)
    if cover.sum() < min_cells:
        return None
    if cover.sum() <= 0:
        return 0.0
    cells = _cells(engine, axis, index, grid)
    pooled = (cells * cover[..., None]).sum(axis=(0, 1)) / cover.sum()
    return float(model.cell_probability(pooled[None, :])[0])


# --- the file ------------------------------------------------------------------------------------
def _options_json(options: PresenceOptions) -> str:
    return json.dumps(options.__dict__, sort_keys=True)


def _digest(model: PresenceModel) -> str:
    digest = hashlib.sha256()
    header = [model.model_weights, model.axis, model.mean_area_mm2, model.slice_mm, _options_json(model.options),
              model.info, [[a.index, list(a.centre_rc), list(a.half_rc)] for a in model.anchors]]
    digest.update(json.dumps(header, sort_keys=True).encode())
    for array in _arrays(model).values():
        digest.update(np.ascontiguousarray(array, "<f4").tobytes())
    return "sha256:" + digest.hexdigest()


def _arrays(model: PresenceModel) -> dict[str, np.ndarray]:
    arrays = {"feature_mean": model.feature_mean, "feature_scale": model.feature_scale,
              "foreground": model.foreground, "background": model.background}
    if model.head is not None:
        arrays["head"] = model.head
    return {name: np.ascontiguousarray(value, "<f4") for name, value in arrays.items()}


def save_presence(model: PresenceModel, path: str | Path) -> Path:
    """Write ``model`` as a safetensors file (atomically: a complete file or none)."""
    from safetensors.numpy import save

    metadata = {
        "format": FORMAT,
        "model_weights": model.model_weights,
        "axis": model.axis,
        "mean_area_mm2": json.dumps(model.mean_area_mm2),
        "slice_mm": json.dumps(model.slice_mm),
        "options": _options_json(model.options),
        "info": json.dumps(model.info, sort_keys=True),
        "anchors": json.dumps([[a.index, list(a.centre_rc), list(a.half_rc)] for a in model.anchors]),
        "checksum": model.checksum,
    }
    return write_bytes(path, save(_arrays(model), metadata=metadata))


def load_presence(path: str | Path) -> PresenceModel:
    """Read and verify a presence model file: anything damaged or foreign is one
    :class:`~.errors.ModelError` line (an unreadable path an :class:`~.errors.InputError`)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    hint = "the file is damaged or not a samseg presence model; build it again (samseg auto --save-presence)"
    data = read_file(path, "presence model")
    try:
        tensors = load(data)
        metadata = safetensors_metadata(data)
        if metadata.get("format") != FORMAT:
            raise ModelError("file is not a samseg presence model", str(path), hint)
        options = PresenceOptions(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in json.loads(metadata["options"]).items()})
        anchors = tuple(Anchor(int(i), (float(c[0]), float(c[1])), (float(h[0]), float(h[1])))
                        for i, c, h in json.loads(metadata["anchors"]))
        model = PresenceModel(str(metadata["model_weights"]), str(metadata["axis"]), tensors["feature_mean"],
                              tensors["feature_scale"], tensors["foreground"], tensors["background"],
                              tensors.get("head"), anchors, float(json.loads(metadata["mean_area_mm2"])),
                              float(json.loads(metadata["slice_mm"])), options,
                              json.loads(metadata["info"]))
        checksum = metadata["checksum"]
    except (SafetensorError, ValueError, KeyError, TypeError, OverflowError, IndexError, InputError):
        raise ModelError("presence model file is not readable", str(path), hint) from None
    if model.checksum != checksum:
        raise ModelError("presence model file fails its checksum", str(path), hint)
    return model
