"""Simulated users for ``samseg evaluate``: the ``clicks``, ``scribbles`` and ``lasso`` protocols.

All drive a real :class:`~.session.AnnotationSession` slice by slice, exactly as a person in
the GUI would, on every slice (of the chosen axis) that holds the label, and accept the
slice's candidate when done; the committed label map is the prediction.

* ``clicks`` -- the first click at the label's most interior point (the maximum of the
  distance to its border), then up to K-1 corrective clicks, each at the most interior point
  of the largest error region: positive in a miss, negative in a false positive.
* ``scribbles`` -- one positive stroke along the medial axis of the label's largest piece,
  then up to K-1 corrective strokes along the medial axis of the largest error region
  (positive inside a miss, negative inside a false positive).
* ``lasso`` -- one lasso around the label's largest piece, drawn as a person would: the piece's
  outline widened by ``LASSO_MARGIN_PX``, sampled to one point per 4 pixels of length (within
  ``LASSO_POINTS``), each point moved at random (normal, ``LASSO_JITTER_PX``; seeded by
  ``EvalOptions.seed``); then up to K-1 corrective strokes as in ``scribbles``.

A user stops early on a slice with no error left.  K is ``EvalOptions.clicks``.  Because the
first k prompts do not depend on K, one run also reports, in ``dice_after_prompt``, the 3-D Dice
the user would have had after 1, 2, ..., K prompts per slice.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from ..engine import SliceEngine
from ..prompts import sample_stroke
from ..session import AnnotationSession
from .masks import dice, label_slices
from .protocol import EvalOptions, ProtocolOutcome

SEGMENT = 1
_NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))
_CLOCKWISE = ((0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1))  # from west
LASSO_MARGIN_PX = 1.5
LASSO_POINTS = (20, 40)
LASSO_JITTER_PX = 0.75


def _distance_inside(mask_rc: np.ndarray) -> np.ndarray:
    """Distance of every mask pixel to the nearest pixel outside it (the slice border counts as outside)."""
    return ndimage.distance_transform_edt(np.pad(mask_rc, 1))[1:-1, 1:-1]


def interior_point(mask_rc: np.ndarray) -> np.ndarray:
    """The (row, col) of the pixel farthest from the mask's border (of several, the one
    nearest to their centre)."""
    depth = _distance_inside(mask_rc)
    deepest = np.argwhere(depth == depth.max()).astype(float)
    return deepest[int(np.argmin(np.linalg.norm(deepest - deepest.mean(axis=0), axis=1)))]


def largest_piece(mask_rc: np.ndarray) -> np.ndarray:
    """The largest 8-connected piece of a non-empty mask."""
    pieces, count = ndimage.label(mask_rc, structure=np.ones((3, 3)))
    if count <= 1:
        return mask_rc.astype(bool)
    sizes = np.bincount(pieces.ravel())[1:]
    return pieces == 1 + int(np.argmax(sizes))


def largest_error(truth_rc: np.ndarray, prediction_rc: np.ndarray | None) -> tuple[np.ndarray | None, bool]:
    """The largest connected error region and whether it is a miss (True) or a false positive."""
    prediction_rc = np.zeros_like(truth_rc) if prediction_rc is None else prediction_rc
    best, best_size, positive = None, 0, True
    for errors, is_miss in ((truth_rc & ~prediction_rc, True), (prediction_rc & ~truth_rc, False)):
        if not errors.any():
            continue
        region = largest_piece(errors)
        size = int(region.sum())
        if size > best_size:
            best, best_size, positive = region, size, is_miss
    return best, positive


def medial_path(mask_rc: np.ndarray) -> np.ndarray:
    """A polyline (N, 2) along the medial axis of the mask's largest piece, end to end.

    The ends are the two pixels farthest apart along paths inside the piece; between them the
    path is the cheapest one when a step costs its length over the squared distance to the
    border, so it keeps to the middle.  Pixels on the border ring are trimmed off the ends.
    """
    piece = largest_piece(mask_rc)
    inside = _distance_inside(piece)
    pixels = np.argwhere(piece)
    if len(pixels) == 1:
        return pixels.astype(float)
    node = -np.ones(piece.shape, dtype=np.int64)
    node[pixels[:, 0], pixels[:, 1]] = np.arange(len(pixels))
    sources, targets, lengths = [], [], []
    rows, cols = piece.shape
    for dr, dc in _NEIGHBOURS:
        r2, c2 = pixels[:, 0] + dr, pixels[:, 1] + dc
        ok = (r2 >= 0) & (r2 < rows) & (c2 >= 0) & (c2 < cols)
        ok[ok] = node[r2[ok], c2[ok]] >= 0
        sources.append(np.flatnonzero(ok))
        targets.append(node[r2[ok], c2[ok]])
        lengths.append(np.full(int(ok.sum()), np.hypot(dr, dc)))
    source, target, length = (np.concatenate(v) for v in (sources, targets, lengths))
    graph = coo_matrix((length, (source, target)), shape=(len(pixels),) * 2).tocsr()
    start = int(node[tuple(np.unravel_index(int(np.argmax(inside)), inside.shape))])
    end_a = int(np.argmax(np.where(np.isfinite(d := dijkstra(graph, False, start)), d, -1)))
    from_a = dijkstra(graph, False, end_a)
    end_b = int(np.argmax(np.where(np.isfinite(from_a), from_a, -1)))
    depth = inside[pixels[:, 0], pixels[:, 1]]
    cost = length / (0.5 * (depth[source] + depth[target])) ** 2
    weighted = coo_matrix((cost, (source, target)), shape=(len(pixels),) * 2).tocsr()
    _, previous = dijkstra(weighted, False, end_a, return_predecessors=True)
    path = [end_b]
    while path[-1] != end_a and previous[path[-1]] >= 0:
        path.append(int(previous[path[-1]]))
    path_rc = pixels[path[::-1]].astype(float)
    deep = inside[path_rc[:, 0].astype(int), path_rc[:, 1].astype(int)] > 1.5
    return path_rc[deep] if deep.any() else path_rc


def trace_outline(mask_rc: np.ndarray) -> np.ndarray:
    """The border pixels (N, 2) of the mask's largest piece in order, clockwise from its top-left
    pixel (Moore-neighbour tracing; a pixel recurs where the piece is one pixel thin)."""
    piece = np.pad(largest_piece(mask_rc), 1)
    start = tuple(int(v) for v in np.argwhere(piece)[0])
    outline, current, back = [start], start, 0  # back: where the background pixel behind us lies
    while True:
        for turn in range(1, 9):
            direction = (back + turn) % 8
            ahead = (current[0] + _CLOCKWISE[direction][0], current[1] + _CLOCKWISE[direction][1])
            if piece[ahead]:
                break
        else:  # a single pixel
            break
        if current == start and len(outline) > 1 and ahead == outline[1]:
            outline.pop()  # back at the start, about to go round again
            break
        behind = _CLOCKWISE[(direction - 1) % 8]  # the background pixel checked just before ``ahead``
        back = _CLOCKWISE.index((current[0] + behind[0] - ahead[0], current[1] + behind[1] - ahead[1]))
        outline.append(ahead)
        current = ahead
    return np.asarray(outline, dtype=float) - 1


def lasso_outline(mask_rc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The outline (N, 2) a person draws around the mask's largest piece: its border widened by
    ``LASSO_MARGIN_PX``, sampled evenly to one point per 4 pixels of length (``LASSO_POINTS``
    at least and at most), each point moved by normal noise of ``LASSO_JITTER_PX``."""
    widened = ndimage.distance_transform_edt(~largest_piece(mask_rc)) <= LASSO_MARGIN_PX
    border = trace_outline(ndimage.binary_fill_holes(widened))
    ring = np.concatenate([border, border[:1]])
    length = float(np.linalg.norm(np.diff(ring, axis=0), axis=1).sum())
    count = int(np.clip(round(length / 4), *LASSO_POINTS))
    outline = sample_stroke(ring, count + 1)[:-1] + rng.normal(0.0, LASSO_JITTER_PX, (count, 2))
    return outline.clip(0, np.asarray(mask_rc.shape) - 1)


Draw = Callable[[AnnotationSession, str, int, np.ndarray, bool], None]


def _click(session: AnnotationSession, axis: str, index: int, region: np.ndarray, positive: bool) -> None:
    session.add_point(SEGMENT, axis, index, interior_point(region), positive)


def _stroke(session: AnnotationSession, axis: str, index: int, region: np.ndarray, positive: bool) -> None:
    session.add_stroke(SEGMENT, axis, index, medial_path(region), positive)


def _run(engine: SliceEngine, truth_kji: np.ndarray, options: EvalOptions, first: Draw,
         correct: Draw) -> ProtocolOutcome:
    """Per slice holding the label: ``first`` on the label, then up to K-1 times ``correct`` on
    the largest error; the slice is accepted when done."""
    axis = options.axis
    axes = engine.volume.axes(axis)
    truth = axes.stack(truth_kji)
    budget = max(1, options.clicks)
    after_kji = np.zeros((budget, *truth_kji.shape), dtype=bool)  # the result had the user stopped after k prompts
    session = AnnotationSession(engine)
    prompts, decodes = 0, 0
    for index in label_slices(truth):
        truth_rc = truth[index]
        for step in range(budget):
            if step == 0:
                first(session, axis, index, truth_rc, True)
            else:
                region, positive = largest_error(truth_rc, session.candidate_mask(SEGMENT, axis, index))
                if region is None:
                    break
                correct(session, axis, index, region, positive)
            prompts += 1
            decodes += session.candidate(SEGMENT, axis, index).decodes
            for later in range(step, budget):
                axes.stack(after_kji[later])[index] = session.candidate_mask(SEGMENT, axis, index)
        session.accept(SEGMENT, axis, index)
    prediction_kji = session.labels_kji == SEGMENT
    extra = {"prompts": prompts, "decodes": decodes,
             "dice_after_prompt": [round(dice(after, truth_kji), 4) for after in after_kji]}
    return ProtocolOutcome(prediction_kji, extra)


def clicks_protocol(engine: SliceEngine, truth_kji: np.ndarray, options: EvalOptions) -> ProtocolOutcome:
    """Per slice: a click at the label's most interior point, then K-1 corrective clicks."""
    return _run(engine, truth_kji, options, _click, _click)


def scribbles_protocol(engine: SliceEngine, truth_kji: np.ndarray, options: EvalOptions) -> ProtocolOutcome:
    """Per slice: a stroke along the label's medial axis, then K-1 corrective strokes."""
    return _run(engine, truth_kji, options, _stroke, _stroke)


def lasso_protocol(engine: SliceEngine, truth_kji: np.ndarray, options: EvalOptions) -> ProtocolOutcome:
    """Per slice: a lasso around the label (imprecise, seeded by ``options.seed``), then K-1
    corrective strokes."""
    rng = np.random.default_rng(options.seed)

    def lasso(session: AnnotationSession, axis: str, index: int, region: np.ndarray, positive: bool) -> None:
        session.add_lasso(SEGMENT, axis, index, lasso_outline(region, rng))

    return _run(engine, truth_kji, options, lasso, _stroke)
