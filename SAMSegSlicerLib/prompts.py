"""Prompts a user places on one slice, and how they become model input.

Every prompt lives in slice pixel coordinates (``slice_rc``: row, col; pixel centres at
integers) of one slice of one anatomical axis:

* :class:`Point` -- a click, positive (object) or negative (background);
* :class:`Box` -- an inclusive pixel box ``(row_min, col_min, row_max, col_max)``;
* :class:`Stroke` -- a free-hand polyline, positive or negative;
* :class:`Lasso` -- a closed outline drawn around the object: its bounding box is the slice's
  box (a later lasso or box replaces an earlier one) and its inside is positive evidence.

:func:`decode_slice` turns the prompts of a slice (and the slice's previous result) into a
:class:`Candidate` mask.  How depends on the model:

* **Point-capable models** (SAM ViT, MedSAM): one decode with all clicks as points, each
  stroke as points sampled evenly along it (at most ``points_per_stroke``), the box, and the
  previous low-resolution logits; a lasso gives its box and a few points deep inside it.
* **Box-only models** (LiteMedSAM, ``ModelSpec.box_only``), which give Dice ~0.02 from raw
  points: a click or a stroke is *evidence for a box*.

  - A box or a lasso is decoded as the box it gives.
  - The first click proposes squares of several sizes (in mm) centred on it; the first
    positive stroke proposes its bounding box grown by several margins.
  - A corrective prompt adjusts the previous box: a positive one grows it to take the prompt
    in, a negative one pulls the two nearest sides in past it.  Margins are multiples of the
    prompt's *reach* (how far it lies from the mask's edge).
  - All proposals are decoded in one batch (:meth:`~.engine.SliceEngine.predict_many`) and
    scored: the model's IoU estimate, plus agreement with every prompt on the slice
    (positive evidence inside the mask, negative outside), plus -- for corrections -- the
    IoU with the *local edit* (the previous mask with the prompt's neighbourhood added or
    cut out), which for strokes also competes as a proposal itself.
  - The winner is finally made to obey the latest correction where it was placed.

For both kinds, negative strokes remove their own pixels from the mask and positive strokes
add theirs: a stroke is drawn on pixels the user has seen.  Likewise a lasso, when it is the
latest prompt, cuts away what lies outside it: the user drew it around the object.

The choices are the measured defaults of :class:`PromptPolicy`; the README's "Interactive
annotation" section has the tables.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from .engine import ModelPrompt
from .errors import PromptError
from .geometry import bbox_rc

if TYPE_CHECKING:
    from .engine import SliceEngine


# --- prompt types --------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """A click at ``point_rc`` (row, col); ``positive`` marks the object, else background."""

    point_rc: tuple[float, float]
    positive: bool = True

    def describe(self) -> dict:
        return {"type": "point", "point_rc": [round(float(v), 2) for v in self.point_rc], "positive": self.positive}


@dataclass(frozen=True)
class Box:
    """An inclusive pixel box ``(row_min, col_min, row_max, col_max)``."""

    box_rc: tuple[float, float, float, float]

    def describe(self) -> dict:
        return {"type": "box", "box_rc": [round(float(v), 2) for v in self.box_rc]}


@dataclass(frozen=True)
class Stroke:
    """A free-hand polyline through ``points_rc`` ((N, 2) rows/cols, N >= 1)."""

    points_rc: tuple[tuple[float, float], ...]
    positive: bool = True

    @property
    def array_rc(self) -> np.ndarray:
        return np.asarray(self.points_rc, dtype=float).reshape(-1, 2)

    def describe(self) -> dict:
        return {"type": "stroke", "points_rc": [[round(float(r), 2), round(float(c), 2)] for r, c in self.points_rc],
                "positive": self.positive}


@dataclass(frozen=True)
class Lasso:
    """A closed outline through ``outline_rc`` ((N, 2) rows/cols, N >= 3; the last point joins the first)."""

    outline_rc: tuple[tuple[float, float], ...]

    @property
    def array_rc(self) -> np.ndarray:
        return np.asarray(self.outline_rc, dtype=float).reshape(-1, 2)

    @property
    def box_rc(self) -> tuple[float, float, float, float]:
        """The outline's bounding box (row_min, col_min, row_max, col_max)."""
        outline = self.array_rc
        return _box_tuple(np.concatenate([outline.min(axis=0), outline.max(axis=0)]))

    def describe(self) -> dict:
        return {"type": "lasso", "outline_rc": [[round(float(r), 2), round(float(c), 2)] for r, c in self.outline_rc]}


Prompt = Point | Box | Stroke | Lasso


def _inside(rows: np.ndarray, cols: np.ndarray, shape_rc: tuple[int, int]) -> np.ndarray:
    n_rows, n_cols = shape_rc
    return (rows >= -0.5) & (rows <= n_rows - 0.5) & (cols >= -0.5) & (cols <= n_cols - 0.5)


def make_point(point_rc, positive: bool, shape_rc: tuple[int, int]) -> Point:
    """A validated :class:`Point`; :class:`PromptError` when it is not a point inside the slice."""
    values = np.asarray(point_rc, dtype=float).reshape(-1)
    if values.shape != (2,) or not np.all(np.isfinite(values)):
        raise PromptError(f"a point needs two finite numbers (row, col), got {point_rc!r}", None,
                          "click on the slice")
    if not _inside(values[:1], values[1:], shape_rc)[0]:
        raise PromptError(f"point (row {values[0]:.1f}, col {values[1]:.1f}) is outside the "
                          f"{shape_rc[0]}x{shape_rc[1]} slice", None, "click inside the image")
    return Point((float(values[0]), float(values[1])), bool(positive))


def make_box(box_rc, shape_rc: tuple[int, int]) -> Box:
    """A validated :class:`Box`, clipped to the slice; errors for inverted, degenerate or outside boxes."""
    values = np.asarray(box_rc, dtype=float).reshape(-1)
    if values.shape != (4,) or not np.all(np.isfinite(values)):
        raise PromptError(f"a box needs four finite numbers (row_min, col_min, row_max, col_max), got {box_rc!r}",
                          None, "draw the box again")
    r0, c0, r1, c1 = values
    if r1 < r0 or c1 < c0:
        raise PromptError(f"inverted box (rows {r0:g}..{r1:g}, cols {c0:g}..{c1:g})", None,
                          "give (row_min, col_min, row_max, col_max)")
    n_rows, n_cols = shape_rc
    if r1 < -0.5 or c1 < -0.5 or r0 > n_rows - 0.5 or c0 > n_cols - 0.5:
        raise PromptError(f"box (rows {r0:g}..{r1:g}, cols {c0:g}..{c1:g}) is outside the "
                          f"{n_rows}x{n_cols} slice", None, "draw the box on the image")
    r0, r1 = max(r0, 0.0), min(r1, n_rows - 1.0)
    c0, c1 = max(c0, 0.0), min(c1, n_cols - 1.0)
    if r1 - r0 < 1 or c1 - c0 < 1:
        raise PromptError(f"degenerate box (rows {r0:g}..{r1:g}, cols {c0:g}..{c1:g}): it must span at least "
                          "2x2 pixels", None, "drag the box open")
    return Box((float(r0), float(c0), float(r1), float(c1)))


def make_stroke(points_rc, positive: bool, shape_rc: tuple[int, int]) -> Stroke:
    """A validated :class:`Stroke`; errors for empty strokes and strokes that leave the slice."""
    values = np.asarray(points_rc, dtype=float)
    if values.size == 0:
        raise PromptError("empty stroke (no points)", None, "draw on the slice")
    if values.ndim != 2 or values.shape[1] != 2 or not np.all(np.isfinite(values)):
        raise PromptError(f"a stroke needs (N, 2) finite row/col points, got shape {values.shape}", None,
                          "draw on the slice")
    outside = ~_inside(values[:, 0], values[:, 1], shape_rc)
    if outside.any():
        r, c = values[np.argmax(outside)]
        raise PromptError(f"stroke point (row {r:.1f}, col {c:.1f}) is outside the {shape_rc[0]}x{shape_rc[1]} "
                          "slice", None, "draw inside the image")
    return Stroke(tuple((float(r), float(c)) for r, c in values), bool(positive))


def make_lasso(points_rc, shape_rc: tuple[int, int]) -> Lasso:
    """A validated :class:`Lasso`; errors for fewer than 3 distinct points, an outline that encloses
    no area or spans less than 2x2 pixels, and outlines that leave the slice."""
    values = np.asarray(points_rc, dtype=float)
    if values.ndim != 2 or values.shape[1] != 2 or not np.all(np.isfinite(values)):
        raise PromptError(f"a lasso needs (N, 2) finite row/col points, got shape {values.shape}", None,
                          "draw around the object")
    distinct = len(np.unique(values, axis=0))
    if distinct < 3:
        raise PromptError(f"a lasso needs at least 3 distinct points, got {distinct}", None,
                          "draw around the object")
    outside = ~_inside(values[:, 0], values[:, 1], shape_rc)
    if outside.any():
        r, c = values[np.argmax(outside)]
        raise PromptError(f"lasso point (row {r:.1f}, col {c:.1f}) is outside the {shape_rc[0]}x{shape_rc[1]} "
                          "slice", None, "draw inside the image")
    rows, cols = values[:, 0], values[:, 1]
    area = 0.5 * abs(float(np.dot(rows, np.roll(cols, -1)) - np.dot(cols, np.roll(rows, -1))))
    if area < 1.0:
        raise PromptError(f"the lasso encloses {area:g} square pixels (at least 1 needed)", None,
                          "draw around the object")
    span = values.max(axis=0) - values.min(axis=0)
    if span.min() < 1:
        raise PromptError(f"the lasso spans {span[0]:g}x{span[1]:g} pixels: it must span at least 2x2 pixels",
                          None, "draw around the object")
    return Lasso(tuple((float(r), float(c)) for r, c in values))


@dataclass(frozen=True)
class SlicePrompts:
    """Everything placed on one slice for one segment, in order (a later box or lasso replaces an
    earlier one as the slice's box)."""

    items: tuple[Prompt, ...] = ()

    def add(self, prompt: Prompt) -> SlicePrompts:
        return SlicePrompts(self.items + (prompt,))

    @property
    def box(self) -> Box | None:
        """The latest box, or the box of the latest lasso when that came later."""
        latest = next((p for p in reversed(self.items) if isinstance(p, (Box, Lasso))), None)
        return Box(latest.box_rc) if isinstance(latest, Lasso) else latest

    @property
    def points(self) -> tuple[Point, ...]:
        return tuple(p for p in self.items if isinstance(p, Point))

    @property
    def strokes(self) -> tuple[Stroke, ...]:
        return tuple(p for p in self.items if isinstance(p, Stroke))

    @property
    def latest(self) -> Prompt | None:
        return self.items[-1] if self.items else None


# --- strokes as pixels and points --------------------------------------------------------

def sample_stroke(points_rc: np.ndarray, count: int) -> np.ndarray:
    """``count`` points evenly spaced by arc length along a polyline, both ends included."""
    points_rc = np.asarray(points_rc, dtype=float).reshape(-1, 2)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points_rc, axis=0), axis=1))])
    if count <= 1 or arc[-1] == 0:  # a dab: one point
        return points_rc[:1].copy()
    targets = np.linspace(0.0, arc[-1], count)
    return np.stack([np.interp(targets, arc, points_rc[:, 0]), np.interp(targets, arc, points_rc[:, 1])], axis=1)


def stroke_pixels(points_rc: np.ndarray, shape_rc: tuple[int, int]) -> np.ndarray:
    """The (M, 2) integer pixels a polyline passes through (8-connected, no duplicates)."""
    points_rc = np.asarray(points_rc, dtype=float).reshape(-1, 2)
    length = float(np.linalg.norm(np.diff(points_rc, axis=0), axis=1).sum()) if len(points_rc) > 1 else 0.0
    dense = sample_stroke(points_rc, max(2, int(np.ceil(length * 2)) + 1)) if length > 0 else points_rc[:1]
    pixels = np.rint(dense).astype(np.int64)
    pixels[:, 0] = pixels[:, 0].clip(0, shape_rc[0] - 1)
    pixels[:, 1] = pixels[:, 1].clip(0, shape_rc[1] - 1)
    _, first = np.unique(pixels[:, 0] * shape_rc[1] + pixels[:, 1], return_index=True)
    return pixels[np.sort(first)]


# --- lassos as pixels and points ---------------------------------------------------------

def lasso_mask(outline_rc: np.ndarray, shape_rc: tuple[int, int]) -> np.ndarray:
    """The pixels inside a closed outline (centre inside, even-odd rule) or on it."""
    outline_rc = np.asarray(outline_rc, dtype=float).reshape(-1, 2)
    ring = np.concatenate([outline_rc, outline_rc[:1]])
    mask = np.zeros(shape_rc, dtype=bool)
    low = np.maximum(np.ceil(outline_rc.min(axis=0)), 0).astype(int)
    high = np.minimum(np.floor(outline_rc.max(axis=0)), np.asarray(shape_rc) - 1).astype(int)
    if np.all(high >= low):
        # Scanlines: each edge crosses the rows between its ends once; a pixel is inside when an
        # odd number of crossings lie to its right.  ``right[row, k]`` counts crossings whose
        # first pixel to the right is column ``low + k``.
        right = np.zeros((high[0] - low[0] + 1, high[1] - low[1] + 2), dtype=np.int64)
        for (r0, c0), (r1, c1) in zip(ring[:-1], ring[1:]):
            rows = np.arange(max(np.ceil(min(r0, r1)), low[0]), min(np.ceil(max(r0, r1)) - 1, high[0]) + 1)
            if r0 == r1 or not len(rows):
                continue
            cols = c0 + (rows - r0) * (c1 - c0) / (r1 - r0)
            first = np.clip(np.ceil(cols) - low[1], 0, right.shape[1] - 1).astype(np.int64)
            np.add.at(right, (rows.astype(np.int64) - low[0], first), 1)
        crossings = np.cumsum(right[:, ::-1], axis=1)[:, ::-1][:, 1:]
        mask[low[0]:high[0] + 1, low[1]:high[1] + 1] = crossings % 2 == 1
    pixels = stroke_pixels(ring, shape_rc)
    mask[pixels[:, 0], pixels[:, 1]] = True
    return mask


def lasso_points(outline_rc: np.ndarray, count: int) -> np.ndarray:
    """``count`` points (or fewer) spread deep inside a closed outline: its most interior pixel (of
    several, the one nearest to their centre), then each next the pixel farthest from those
    chosen, among pixels at least half as deep."""
    outline_rc = np.asarray(outline_rc, dtype=float).reshape(-1, 2)
    shape_rc = tuple(int(v) + 2 for v in np.ceil(outline_rc.max(axis=0).clip(0)))
    depth = ndimage.distance_transform_edt(np.pad(lasso_mask(outline_rc, shape_rc), 1))[1:-1, 1:-1]
    deepest = np.argwhere(depth == depth.max()).astype(float)
    chosen = [deepest[int(np.argmin(np.linalg.norm(deepest - deepest.mean(axis=0), axis=1)))]]
    deep = np.argwhere(depth >= 0.5 * depth.max()).astype(float)
    nearest = np.linalg.norm(deep - chosen[0], axis=1)
    while len(chosen) < count and nearest.max() > 0:
        chosen.append(deep[int(np.argmax(nearest))])
        nearest = np.minimum(nearest, np.linalg.norm(deep - chosen[-1], axis=1))
    return np.asarray(chosen)


# --- the policy --------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptPolicy:
    """How prompts become model input; the defaults are the measured choices (see the README).

    Box sizes are in millimetres so that they mean the same on a 0.8 mm and a 3 mm slice.

    * ``click_half_sizes_mm``: half side lengths of the squares proposed around a first click;
      ``click_extra_half_sizes_mm``: extra (half height, half width) rectangles.  While a
      learned prompt adapter that knows the structure's size is in use (``assist.py``), the
      proposals are instead rectangles of that size times each of ``assist_click_scales``.
    * ``stroke_margins_mm``: margins added around a first positive stroke's bounding box.
    * ``grow_factors`` / ``shrink_factors``: a corrective prompt's *reach* is how far its
      pixels lie from the mask's edge (a click in a miss: the distance to the mask; in a false
      positive: the distance to the background).  A positive correction proposes the previous
      box grown to hold the prompt plus each factor times its reach; a negative one pulls the
      two nearest sides in past the prompt by each factor times its reach.  Reach is looked
      for up to ``reach_limit_mm`` away.
    * The *local edit* of a correction is the previous mask with the prompt's neighbourhood
      (its pixels widened by its reach, at most ``edit_reach_mm``) added or cut out.
      ``edit_competes_for_strokes`` / ``..._for_clicks``: the local edit competes with the
      decoded proposals (measured: helps strokes, whose band covers most of the error; hurts
      clicks, whose small disc wins too often and blocks larger fixes).
    * ``agreement_weight``: weight of the prompt-agreement score (positive evidence inside,
      negative outside; 0..2); ``keep_weight``: weight of a proposal's IoU with the local edit
      (a correction should change what it points at, not the rest).
    * ``enforce_latest``: after the choice, apply the latest correction's local edit to the
      winner, so a click or stroke is always obeyed where it was placed.
    * ``box_only_previous_logits``: give box-only models the previous logits as a mask prompt
      (measured: LiteMedSAM never learnt mask prompts; it lowers Dice).
    * ``points_per_stroke``: cap on the points a stroke becomes (point-capable models) and on
      the evidence points sampled from it for scoring.
    * ``points_per_lasso``: the points deep inside a lasso (:func:`lasso_points`) it becomes
      beside its box (point-capable models) and that stand for its inside when scoring.
    """

    click_half_sizes_mm: tuple[float, ...] = (10.0, 18.0, 32.0, 56.0)
    click_extra_half_sizes_mm: tuple[tuple[float, float], ...] = ()
    assist_click_scales: tuple[float, ...] = (0.6, 0.8, 1.0, 1.25)
    stroke_margins_mm: tuple[float, ...] = (3.0, 8.0, 15.0)
    grow_factors: tuple[float, ...] = (1.0, 2.0, 3.0)
    shrink_factors: tuple[float, ...] = (1.0, 2.0)
    reach_limit_mm: float = 40.0
    edit_reach_mm: float = 6.0
    edit_competes_for_strokes: bool = True
    edit_competes_for_clicks: bool = False
    enforce_latest: bool = True
    agreement_weight: float = 1.0
    keep_weight: float = 1.0
    box_only_previous_logits: bool = False
    points_per_stroke: int = 8
    points_per_lasso: int = 4


DEFAULT_POLICY = PromptPolicy()


@dataclass(frozen=True)
class Candidate:
    """A slice's current result: the mask on the slice's pixels and what produced it.

    ``box_rc`` is the box the model was given (None when it got no box); ``decodes`` counts
    the decoder passes the latest prompt cost.
    """

    mask_rc: np.ndarray
    iou: float
    low_res_logits: np.ndarray
    box_rc: tuple[float, float, float, float] | None
    decodes: int = 1

    def __post_init__(self):
        self.mask_rc.setflags(write=False)
        self.low_res_logits.setflags(write=False)


@dataclass(frozen=True)
class Evidence:
    """The prompts of a slice as point sets: where the object is and where it is not."""

    positive_rc: np.ndarray
    negative_rc: np.ndarray


def evidence_of(prompts: tuple[Prompt, ...], per_stroke: int, per_lasso: int) -> Evidence:
    positive, negative = [np.zeros((0, 2))], [np.zeros((0, 2))]
    for prompt in prompts:
        if isinstance(prompt, Point):
            (positive if prompt.positive else negative).append(np.asarray([prompt.point_rc], dtype=float))
        elif isinstance(prompt, Stroke):
            (positive if prompt.positive else negative).append(sample_stroke(prompt.array_rc, per_stroke))
        elif isinstance(prompt, Lasso):
            positive.append(lasso_points(prompt.array_rc, per_lasso))
    return Evidence(np.concatenate(positive), np.concatenate(negative))


def agreement(mask_rc: np.ndarray, evidence: Evidence) -> float:
    """Fraction of positive evidence inside the mask plus fraction of negative evidence outside it (0..2)."""
    def fraction_inside(points_rc: np.ndarray) -> float:
        pixels = np.rint(points_rc).astype(np.int64)
        pixels[:, 0] = pixels[:, 0].clip(0, mask_rc.shape[0] - 1)
        pixels[:, 1] = pixels[:, 1].clip(0, mask_rc.shape[1] - 1)
        return float(mask_rc[pixels[:, 0], pixels[:, 1]].mean())

    positive = fraction_inside(evidence.positive_rc) if len(evidence.positive_rc) else 1.0
    negative = 1.0 - fraction_inside(evidence.negative_rc) if len(evidence.negative_rc) else 1.0
    return positive + negative


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


# --- corrections -------------------------------------------------------------------------

def prompt_pixels(prompt: Point | Stroke, shape_rc: tuple[int, int]) -> np.ndarray:
    """The (M, 2) integer pixels a click or a stroke touches."""
    if isinstance(prompt, Point):
        pixel = np.rint(np.asarray(prompt.point_rc)).astype(np.int64)
        return np.clip(pixel, 0, np.asarray(shape_rc) - 1).reshape(1, 2)
    return stroke_pixels(prompt.array_rc, shape_rc)


def reach_px(mask_rc: np.ndarray, pixels_rc: np.ndarray, positive: bool, limit_px: float) -> float:
    """How far a correction's pixels lie from the mask's edge (median, 1 to ``limit_px`` pixels):
    a positive one from the nearest mask pixel, a negative one from the nearest background pixel.
    Only a window of ``limit_px`` around the pixels is searched."""
    pad = int(np.ceil(limit_px))
    low = np.maximum(pixels_rc.min(axis=0) - pad, 0)
    high = np.minimum(pixels_rc.max(axis=0) + pad + 1, mask_rc.shape)
    window = mask_rc[low[0]:high[0], low[1]:high[1]]
    region = ~window if positive else window
    if region.all():
        return float(limit_px)
    distance = ndimage.distance_transform_edt(region)
    reach = float(np.median(distance[pixels_rc[:, 0] - low[0], pixels_rc[:, 1] - low[1]]))
    return float(np.clip(reach, 1.0, limit_px))


def local_edit(mask_rc: np.ndarray, pixels_rc: np.ndarray, positive: bool, reach: float) -> np.ndarray:
    """``mask_rc`` with every pixel within ``reach`` of the correction added (positive) or cut out."""
    edited = mask_rc.copy()
    pad = int(np.ceil(reach)) + 1
    low = np.maximum(pixels_rc.min(axis=0) - pad, 0)
    high = np.minimum(pixels_rc.max(axis=0) + pad + 1, mask_rc.shape)
    window = np.ones(tuple(high - low), dtype=bool)
    window[pixels_rc[:, 0] - low[0], pixels_rc[:, 1] - low[1]] = False
    near = ndimage.distance_transform_edt(window) <= reach
    edited[low[0]:high[0], low[1]:high[1]][near] = positive
    return edited


# --- boxes -------------------------------------------------------------------------------

def _clip_boxes(boxes_rc: np.ndarray, shape_rc: tuple[int, int]) -> np.ndarray:
    boxes_rc = np.asarray(boxes_rc, dtype=float).reshape(-1, 4).copy()
    boxes_rc[:, [0, 2]] = boxes_rc[:, [0, 2]].clip(0, shape_rc[0] - 1)
    boxes_rc[:, [1, 3]] = boxes_rc[:, [1, 3]].clip(0, shape_rc[1] - 1)
    keep = (boxes_rc[:, 2] - boxes_rc[:, 0] >= 1) & (boxes_rc[:, 3] - boxes_rc[:, 1] >= 1)
    boxes_rc = boxes_rc[keep]
    _, first = np.unique(np.round(boxes_rc, 1), axis=0, return_index=True)
    return boxes_rc[np.sort(first)]


def _grow(points_rc: np.ndarray, half_rows: float, half_cols: float) -> tuple[float, float, float, float]:
    low, high = points_rc.min(axis=0), points_rc.max(axis=0)
    return (low[0] - half_rows, low[1] - half_cols, high[0] + half_rows, high[1] + half_cols)


def first_boxes(prompt: Point | Stroke, policy: PromptPolicy, spacing_rc,
                structure_half_mm: tuple[float, float] | None = None) -> np.ndarray:
    """Proposals for a slice's first positive prompt: boxes centred on a click (of the
    structure's size when it is known), or a stroke's bounding box grown by each margin."""
    mm_r, mm_c = spacing_rc
    points_rc = np.asarray([prompt.point_rc]) if isinstance(prompt, Point) else prompt.array_rc
    if isinstance(prompt, Point) and structure_half_mm is not None:
        sizes = [(s * structure_half_mm[0], s * structure_half_mm[1]) for s in policy.assist_click_scales]
    elif isinstance(prompt, Point):
        sizes = [(h, h) for h in policy.click_half_sizes_mm] + list(policy.click_extra_half_sizes_mm)
    else:
        sizes = [(m, m) for m in policy.stroke_margins_mm]
    return np.asarray([_grow(points_rc, h_r / mm_r, h_c / mm_c) for h_r, h_c in sizes], dtype=float)


def grown_boxes(box_rc, pixels_rc: np.ndarray, reach: float, policy: PromptPolicy) -> np.ndarray:
    """``box_rc`` grown to hold the correction's pixels plus each grow factor times its reach."""
    box = np.asarray(box_rc, dtype=float)
    grown = np.asarray([_grow(pixels_rc, f * reach, f * reach) for f in policy.grow_factors])
    return np.concatenate([np.minimum(grown[:, :2], box[:2]), np.maximum(grown[:, 2:], box[2:])], axis=1)


def shrunk_boxes(box_rc, pixels_rc: np.ndarray, reach: float, policy: PromptPolicy) -> np.ndarray:
    """``box_rc`` with each of its two sides nearest to the correction pulled in past it by each
    shrink factor times its reach."""
    box = np.asarray(box_rc, dtype=float)
    low, high = pixels_rc.min(axis=0), pixels_rc.max(axis=0)
    gaps = np.asarray([low[0] - box[0], low[1] - box[1], box[2] - high[0], box[3] - high[1]])
    boxes = []
    for side in np.argsort(gaps)[:2]:
        for factor in policy.shrink_factors:
            moved = box.copy()
            if side < 2:
                moved[side] = high[side] + factor * reach
            else:
                moved[side] = low[side - 2] - factor * reach
            boxes.append(moved)
    return np.asarray(boxes, dtype=float)


# --- decoding ----------------------------------------------------------------------------

def _box_tuple(box_rc) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in np.asarray(box_rc, dtype=float).reshape(4))


def _paint_strokes(mask_rc: np.ndarray, strokes: tuple[Stroke, ...]) -> np.ndarray:
    if not strokes:
        return mask_rc
    mask_rc = mask_rc.copy()
    for stroke in strokes:
        pixels = stroke_pixels(stroke.array_rc, mask_rc.shape)
        mask_rc[pixels[:, 0], pixels[:, 1]] = stroke.positive
    return mask_rc


def point_model_prompt(prompts: SlicePrompts, previous: Candidate | None, policy: PromptPolicy) -> ModelPrompt:
    """What a point-capable model is given: clicks, strokes as sampled points, lassos as points deep
    inside them, the box, the previous logits."""
    coords, labels = [np.zeros((0, 2))], [np.zeros(0, dtype=np.int64)]
    for prompt in prompts.items:
        if isinstance(prompt, Point):
            coords.append(np.asarray([prompt.point_rc], dtype=float))
            labels.append(np.asarray([int(prompt.positive)]))
        elif isinstance(prompt, Stroke):
            samples = sample_stroke(prompt.array_rc, policy.points_per_stroke)
            coords.append(samples)
            labels.append(np.full(len(samples), int(prompt.positive)))
        elif isinstance(prompt, Lasso):
            samples = lasso_points(prompt.array_rc, policy.points_per_lasso)
            coords.append(samples)
            labels.append(np.ones(len(samples), dtype=np.int64))
    points_rc, point_labels = np.concatenate(coords), np.concatenate(labels).astype(np.int64)
    box = prompts.box
    return ModelPrompt(
        points_rc=points_rc if len(points_rc) else None,
        point_labels=point_labels if len(points_rc) else None,
        box_rc=None if box is None else np.asarray(box.box_rc, dtype=float),
        mask_logits=None if previous is None else previous.low_res_logits.copy(),
    )


def _decode_point_model(engine: SliceEngine, axis: str, index: int, prompts: SlicePrompts,
                        previous: Candidate | None, policy: PromptPolicy) -> Candidate:
    if not any(getattr(p, "positive", True) for p in prompts.items):
        raise PromptError("negative prompts alone give the model nothing to segment", None,
                          "place a positive point, a positive stroke or a box first")
    prediction = engine.predict(axis, index, point_model_prompt(prompts, previous, policy))
    box_rc = None if prompts.box is None else _box_tuple(prompts.box.box_rc)
    return Candidate(prediction.mask_rc, prediction.iou, prediction.low_res_logits, box_rc)


def _decode_box_only(engine: SliceEngine, axis: str, index: int, prompts: SlicePrompts,
                     previous: Candidate | None, policy: PromptPolicy) -> Candidate:
    shape_rc = engine.slice_shape(axis)
    latest = prompts.latest
    edited = None
    if isinstance(latest, (Box, Lasso)):
        boxes = np.asarray([latest.box_rc], dtype=float)
    elif previous is None or previous.box_rc is None:
        if not latest.positive:
            raise PromptError("a negative prompt needs a result to correct", None,
                              "place a positive point, a positive stroke or a box on the slice first")
        spacing_rc = engine.volume.axes(axis).spacing_rc(engine.volume.spacing_ijk)
        adapter = engine.model.prompt_adapter
        boxes = first_boxes(latest, policy, spacing_rc, None if adapter is None else adapter.box_half_mm)
    else:
        pixels = prompt_pixels(latest, shape_rc)
        spacing_rc = engine.volume.axes(axis).spacing_rc(engine.volume.spacing_ijk)
        reach = reach_px(previous.mask_rc, pixels, latest.positive, policy.reach_limit_mm / min(spacing_rc))
        if latest.positive:
            boxes = grown_boxes(previous.box_rc, pixels, reach, policy)
        else:
            boxes = shrunk_boxes(previous.box_rc, pixels, reach, policy)
        edit_reach = min(reach, policy.edit_reach_mm / min(spacing_rc))
        edited = local_edit(previous.mask_rc, pixels, latest.positive, edit_reach)
    boxes = _clip_boxes(boxes, shape_rc)
    logits = previous.low_res_logits.copy() if previous is not None and policy.box_only_previous_logits else None
    # With a learned prompt adapter (assist.py) a first click's proposals also carry the clicks
    # as points; the winner then stands for the box around its mask, which corrections adjust
    # as they do without an adapter.
    assisted_first = engine.model.prompt_adapter is not None and previous is None and isinstance(latest, Point)
    points = point_model_prompt(prompts, None, policy) if assisted_first else ModelPrompt()
    model_prompt = ModelPrompt(points.points_rc, points.point_labels, mask_logits=logits)
    predictions = engine.predict_many(axis, index, model_prompt, boxes) if len(boxes) else []
    options = [(p.mask_rc, p.iou, p.low_res_logits, _box_tuple(box)) for p, box in zip(predictions, boxes)]
    if edited is not None and not latest.positive:  # keeping the previous box needs no decoding
        options.append((previous.mask_rc, previous.iou, previous.low_res_logits, previous.box_rc))
    competes = policy.edit_competes_for_clicks if isinstance(latest, Point) else policy.edit_competes_for_strokes
    if edited is not None and competes:
        options.append((edited, previous.iou, previous.low_res_logits, previous.box_rc))
    evidence = evidence_of(prompts.items, policy.points_per_stroke, policy.points_per_lasso)

    def score(option) -> float:
        mask, iou = option[0], option[1]
        value = iou + policy.agreement_weight * agreement(mask, evidence)
        if edited is not None:
            value += policy.keep_weight * mask_iou(mask, edited)
        return value

    mask, iou, logits, box_rc = max(options, key=score)
    if policy.enforce_latest and edited is not None and mask is not edited:
        mask = local_edit(mask, pixels, latest.positive, edit_reach)
    if assisted_first and mask.any():
        box_rc = _box_tuple(bbox_rc(mask))
    return Candidate(mask, float(iou), logits, box_rc, decodes=len(predictions))


def decode_slice(engine: SliceEngine, axis: str, index: int, prompts: SlicePrompts,
                 previous: Candidate | None = None, policy: PromptPolicy = DEFAULT_POLICY) -> Candidate:
    """The mask for ``prompts`` on one slice, refining ``previous`` (the slice's result before
    the latest prompt).  Never encodes a slice that is already in the engine's cache."""
    if not prompts.items:
        raise PromptError("no prompt on the slice", None, "place a point, a box, a stroke or a lasso")
    decode = _decode_box_only if engine.model.spec.box_only else _decode_point_model
    candidate = decode(engine, axis, index, prompts, previous, policy)
    mask_rc = candidate.mask_rc
    if isinstance(prompts.latest, Lasso):
        mask_rc = mask_rc & lasso_mask(prompts.latest.array_rc, mask_rc.shape)
    mask_rc = _paint_strokes(mask_rc, prompts.strokes)
    return candidate if mask_rc is candidate.mask_rc else replace(candidate, mask_rc=mask_rc)
