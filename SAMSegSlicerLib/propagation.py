"""Propagation: carry an object from annotated seed slices to its neighbours until it ends.

From each seed slice a *chain* walks slice by slice away from the seed.  At every step the
mask of the previous slice becomes the prompt of the next one (the *carry*), the model
predicts, and *stop rules* decide whether the prediction is still the same object.  The first
prediction that fails a rule is dropped and ends the chain, so the result ends where the
object ends instead of bleeding into the next organ.

Carry (combinable, :class:`PropagationConfig`):

* a box around the previous mask, enlarged by a margin in millimetres; with several margins
  (a multi-box search) the candidate with the best model IoU estimate times intensity match
  (below) is kept;
* positive points from the previous mask's interior (distance transform), kept only where
  the intensity barely changes between the slices (SAM^Med's consistency rule
  ``|X_next(p) - X_prev(p)| < lambda * std(X_prev[mask])``);
* negative points on a ring just outside the previous mask;
* the previous slice's low-resolution logits as a mask prompt.

Stop rules: too few of the mask's pixels in the seed's typical intensity range (the rule that
finds the end of an organ: past it SAM still finds *something* in the carried box, with a
plausible IoU estimate, overlap and area, but of another tissue), the model's IoU estimate,
the overlap with the previous mask, the area growing or collapsing beyond a ratio, an empty
mask, and the caller's limits (a slice range, stop slices, the next seed).

With a :class:`~.presence.PresenceModel` of the structure (learned from the seeds, or from the
user's finished slices) three more checks run on every slice: the *leak guard* drops predicted
pixels that lie far outside both the presence model's coarse map and the previous mask (a
carried box that spills into a neighbouring organ), the *identity check* stops the chain when
the mask's pooled feature no longer looks like the structure (the drift from one structure to
another that the other rules miss: the new one has a plausible IoU, area and overlap), and the
*absence rule* stops it when the coarse map holds nothing near the carried mask.  The identity
check waits for masks of some size (``identity_min_cells`` embedding cells: the pooled feature of a
smaller mask is mostly its surroundings), so the thin ends of small structures are kept.  The other
way round, a mask that clearly *is* the structure (identity >= ``keep_identity``) overrules the
intensity, overlap and IoU rules: a vertebra or the spinal cord changes its intensity mix and
outline from slice to slice while staying itself.

Between two seeds both ends are carried towards each other; where both chains reach a slice
it takes the mask with the higher model IoU estimate (``reconcile="iou"``) or the one carried
from the nearer seed (``"nearest"``); where one chain stopped early the other fills in.  Seed
slices are never overwritten.

Slices are encoded lazily through the engine (and so through the embedding cache) as a
chain reaches them, with a few slices prefetched ahead of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .engine import ModelPrompt, Prediction, SliceEngine
from .errors import InputError
from .geometry import bbox_rc
from .presence import PresenceModel, SlicePresence, check_model, mask_identity, presence_on_slice
from .worker import CancelToken

# Why a chain ended.
STOP_EMPTY = "empty"                # the prediction holds (almost) no pixels
STOP_IOU = "low_iou"                # the model's IoU estimate fell below min_iou
STOP_OVERLAP = "low_overlap"        # too little overlap with the previous slice's mask
STOP_GROWTH = "area_growth"         # the area grew by more than max_growth
STOP_COLLAPSE = "area_collapse"     # the area shrank below min_shrink of the previous one
STOP_INTENSITY = "intensity"        # too few of the mask's pixels have the seed's intensities
STOP_IDENTITY = "identity"          # the mask no longer looks like the structure (presence model)
STOP_ABSENT = "absent"              # the presence model sees nothing of the structure near the mask
STOP_RANGE = "range"                # the caller's slice range ends here
STOP_SLICE = "stop_slice"           # the next slice is one of the caller's stop slices
STOP_VOLUME_END = "volume_end"      # the last slice of the volume was reached
STOP_SEED = "seed"                  # the chain reached the next seed
STOP_CANCELLED = "cancelled"        # the caller cancelled

RECONCILE_CHOICES = ("nearest", "iou")


@dataclass(frozen=True)
class PropagationConfig:
    """How masks are carried from slice to slice and when a chain stops.

    Lengths are in millimetres so that the same settings fit 0.7 mm and 3 mm grids.  A stop
    rule is off when its threshold is ``None``.
    """

    # carry
    box_margin_mm: tuple[float, ...] = (3.0, 6.0, 9.0)
    positive_points: int = 0
    consistency_lambda: float = 1.0
    negative_points: int = 0
    negative_ring_mm: tuple[float, float] = (3.0, 9.0)
    mask_prompt: bool = False
    select_by_intensity: bool = True
    # stop rules
    min_iou: float | None = 0.5
    min_overlap: float | None = 0.2
    max_growth: float | None = 2.0
    min_shrink: float | None = None
    min_area_mm2: float = 10.0
    min_intensity_match: float | None = 0.25
    intensity_spread: float = 1.3
    # presence guard (used when propagate() is given a presence model)
    min_identity: float | None = 0.2            # stop when the mask's identity falls below this ...
    identity_min_cells: float = 6.0             # ... if it covers this many embedding cells
    keep_identity: float | None = 0.98          # a mask this like the seeds overrules keep_reasons
    keep_reasons: tuple[str, ...] = (STOP_INTENSITY, STOP_OVERLAP, STOP_IOU)
    min_presence: float | None = None
    leak_margin_mm: float | None = 6.0
    # several seeds
    reconcile: str = "iou"
    # encoding
    prefetch: int = 2

    def __post_init__(self):
        if not self.box_margin_mm and self.positive_points <= 0:
            raise InputError("propagation needs a box margin or positive points to carry the mask", None,
                             "give at least one box margin (mm) or a number of positive points")
        if self.reconcile not in RECONCILE_CHOICES:
            raise InputError(f"unknown reconcile rule {self.reconcile!r}", None,
                             f"use one of {', '.join(RECONCILE_CHOICES)}")


@dataclass(frozen=True)
class PropagationProgress:
    """Reported after every slice: how many slices were visited, out of at most how many."""

    slices_done: int
    slices_max: int
    current_index: int
    seed: int
    direction: int


ProgressFn = Callable[[PropagationProgress], None]


@dataclass(frozen=True)
class ChainStop:
    """How one chain ended: it kept slices up to ``last`` and stopped for ``reason``.

    ``stopped_at`` is the slice whose prediction failed a stop rule (it is not part of the
    result); None when the chain ran into a limit (range, stop slice, seed, volume end).
    """

    seed: int
    direction: int
    last: int
    stopped_at: int | None
    reason: str


@dataclass(frozen=True)
class SliceResult:
    mask_rc: np.ndarray
    iou: float
    seed: int


@dataclass
class PropagationResult:
    """Masks per slice along ``axis`` (seeds included) and how every chain ended.

    ``ious`` and ``carried_from`` give, for every predicted slice, the model's IoU estimate and
    the seed whose chain the mask came from.  ``slices_visited`` counts the slices the model
    was run on, including those a stop rule rejected.
    """

    axis: str
    masks: dict[int, np.ndarray]
    seeds: tuple[int, ...]
    stops: tuple[ChainStop, ...]
    slices_visited: int
    cancelled: bool
    ious: dict[int, float] = field(default_factory=dict)
    carried_from: dict[int, int] = field(default_factory=dict)

    @property
    def slices_predicted(self) -> int:
        """Slices that received a predicted mask (seeds not counted)."""
        return sum(1 for index, mask in self.masks.items() if index not in self.seeds and mask.any())

    @property
    def extent(self) -> tuple[int, int] | None:
        filled = [index for index, mask in self.masks.items() if mask.any()]
        return (min(filled), max(filled)) if filled else None

    def stack(self, n_slices: int, shape_rc: tuple[int, int]) -> np.ndarray:
        """All masks as a bool (slice, row, col) array; slices without a mask are empty."""
        out = np.zeros((n_slices, *shape_rc), dtype=bool)
        for index, mask in self.masks.items():
            out[index] = mask
        return out


@dataclass
class _State:
    """What the chain knows about the last slice it kept."""

    index: int
    mask: np.ndarray
    logits: np.ndarray | None
    voxels: np.ndarray
    area: int


@dataclass
class _Chain:
    steps: dict[int, SliceResult]
    stop: ChainStop


class _Run:
    """Book-keeping shared by the chains of one propagate() call."""

    def __init__(self, engine: SliceEngine, axis: str, config: PropagationConfig, slices_max: int,
                 progress: ProgressFn | None, cancel: CancelToken | None, presence: PresenceModel | None):
        self.engine = engine
        self.presence = presence
        self.axis = axis
        self.config = config
        self.slices_max = slices_max
        self.progress = progress
        self.cancel = cancel
        self.visited = 0
        self.prefetch_cancel = CancelToken()
        self.requested: set[int] = set()
        axes = engine.volume.axes(axis)
        self.spacing_rc = axes.spacing_rc(engine.volume.spacing_ijk)
        self.pixel_mm2 = self.spacing_rc[0] * self.spacing_rc[1]

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.cancelled

    def prefetch_from(self, index: int, direction: int, end: int) -> None:
        ahead = [index + direction * step for step in range(1, self.config.prefetch + 1)]
        ahead = [i for i in ahead if (i - end) * direction < 0 and i not in self.requested]
        if ahead:
            self.requested.update(ahead)
            self.engine.prefetch(self.axis, ahead, cancel=self.prefetch_cancel)

    def report(self, index: int, seed: int, direction: int) -> None:
        self.visited += 1
        if self.progress is not None:
            self.progress(PropagationProgress(self.visited, self.slices_max, index, seed, direction))


def propagate(engine: SliceEngine, seeds: Mapping[int, np.ndarray], axis: str,
              config: PropagationConfig | None = None, index_range: tuple[int, int] | None = None,
              stop_slices: Iterable[int] = (), progress: ProgressFn | None = None,
              cancel: CancelToken | None = None, presence: PresenceModel | None = None) -> PropagationResult:
    """Carry the seed masks (slice index -> bool mask_rc on ``axis``) through the volume.

    ``presence``: a presence model of the structure on ``axis`` (:func:`~.presence.build_presence`)
    turns on the leak guard, the identity check and the absence rule of ``config``.

    ``index_range`` (inclusive) bounds the slices that may be predicted; propagation never
    enters a slice in ``stop_slices``.  When ``cancel`` is set the chains end at the slice
    they are on and the result holds everything finished so far (``cancelled`` is True).
    """
    config = config or PropagationConfig()
    n_slices = engine.n_slices(axis)
    shape_rc = engine.slice_shape(axis)
    lo, hi = check_range(index_range, n_slices)
    seed_masks = _check_seeds(seeds, shape_rc, lo, hi)
    if presence is not None:
        check_model(engine, presence)
        if presence.axis != axis:
            raise InputError(f"the presence model was built on the {presence.axis} axis, propagation runs on {axis}",
                             None, "build it on the propagation axis")
    blocked = {int(s) for s in stop_slices}
    order = sorted(seed_masks)
    slices_max = sum(1 for z in range(lo, hi + 1) if z not in seed_masks and z not in blocked)
    run = _Run(engine, axis, config, slices_max, progress, cancel, presence)
    seed_states = {z: _seed_state(engine, axis, z, seed_masks[z]) for z in order}

    chains: list[_Chain] = []
    try:
        for position, seed in enumerate(order):
            below = order[position - 1] if position > 0 else None
            above = order[position + 1] if position + 1 < len(order) else None
            for direction, neighbour in ((-1, below), (+1, above)):
                end, end_reason = _chain_end(seed, direction, neighbour, lo, hi, n_slices, blocked)
                chains.append(_carry(run, seed_states[seed], direction, end, end_reason))
    finally:
        run.prefetch_cancel.cancel()  # queued prefetches are dropped; at most one slice is still encoding

    chosen = _reconcile(chains, config.reconcile)
    masks = {index: step.mask_rc for index, step in chosen.items()}
    masks.update(seed_masks)
    return PropagationResult(axis=axis, masks=dict(sorted(masks.items())), seeds=tuple(order),
                             stops=tuple(chain.stop for chain in chains), slices_visited=run.visited,
                             cancelled=run.cancelled,
                             ious={index: step.iou for index, step in sorted(chosen.items())},
                             carried_from={index: step.seed for index, step in sorted(chosen.items())})


def check_range(index_range, n_slices: int) -> tuple[int, int]:
    if index_range is None:
        return 0, n_slices - 1
    lo, hi = (int(v) for v in index_range)
    if lo > hi or lo < 0 or hi >= n_slices:
        raise InputError(f"slice range {lo}:{hi} is not inside 0:{n_slices - 1}", None,
                         "give Z0:Z1 with 0 <= Z0 <= Z1 < number of slices")
    return lo, hi


def _check_seeds(seeds: Mapping[int, np.ndarray], shape_rc, lo: int, hi: int) -> dict[int, np.ndarray]:
    if not seeds:
        raise InputError("no seed slice given", None, "annotate the object on at least one slice")
    out = {}
    for index, mask in seeds.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != tuple(shape_rc):
            raise InputError(f"seed mask on slice {index} is {mask.shape}, the slices are {tuple(shape_rc)}", None,
                             "give seed masks on the propagation axis")
        if not mask.any():
            raise InputError(f"seed mask on slice {index} is empty", None, "annotate the object on the seed slice")
        if not lo <= int(index) <= hi:
            raise InputError(f"seed slice {index} is outside the range {lo}:{hi}", None,
                             "widen the range or move the seed")
        out[int(index)] = mask
    return out


def _seed_state(engine: SliceEngine, axis: str, index: int, mask: np.ndarray) -> _State:
    return _State(index=index, mask=mask, logits=None, voxels=_voxels(engine, axis, index), area=int(mask.sum()))


def _voxels(engine: SliceEngine, axis: str, index: int) -> np.ndarray:
    return np.asarray(engine.slice_voxels(axis, index), dtype=np.float32)


def _intensity_range(values: np.ndarray, spread: float) -> tuple[float, float]:
    """The seed's typical intensities: median +- ``spread`` robust standard deviations (1.4826 MAD),
    so that a few very dark or bright pixels (gas in the stomach, a vessel) do not widen it; the
    plain standard deviation when more than half the pixels share one value."""
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median))) or float(np.std(values))
    return median - spread * sigma, median + spread * sigma


def _intensity_match(values: np.ndarray, reference: tuple[float, float]) -> float:
    """The fraction of ``values`` inside the reference intensity range (0 for no values)."""
    if not len(values):
        return 0.0
    low, high = reference
    return float(np.count_nonzero((values >= low) & (values <= high))) / len(values)


def _chain_end(seed: int, direction: int, neighbour: int | None, lo: int, hi: int, n_slices: int,
               blocked: set[int]) -> tuple[int, str]:
    """The first slice the chain must not enter, and the reason to give when it gets there."""
    if direction > 0:
        end, reason = (hi + 1, STOP_VOLUME_END if hi == n_slices - 1 else STOP_RANGE)
    else:
        end, reason = (lo - 1, STOP_VOLUME_END if lo == 0 else STOP_RANGE)
    if neighbour is not None:
        end, reason = neighbour, STOP_SEED
    walls = [z for z in blocked if (z - seed) * direction > 0 and (z - end) * direction < 0]
    if walls:
        end = min(walls) if direction > 0 else max(walls)
        reason = STOP_SLICE
    return end, reason


def _carry(run: _Run, seed: _State, direction: int, end: int, end_reason: str) -> _Chain:
    steps: dict[int, SliceResult] = {}
    reference = _intensity_range(seed.voxels[seed.mask], run.config.intensity_spread)
    state = seed
    index = seed.index + direction
    while True:
        if index == end:
            return _Chain(steps, ChainStop(seed.index, direction, state.index, None, end_reason))
        if run.cancelled:
            return _Chain(steps, ChainStop(seed.index, direction, state.index, None, STOP_CANCELLED))
        run.prefetch_from(index, direction, end)
        presence = None if run.presence is None else presence_on_slice(run.engine, run.presence, run.axis, index)
        prediction, voxels = _step(run, state, index, reference)
        run.report(index, seed.index, direction)
        mask = _clean(prediction.mask_rc, state.mask)
        reason, identity = None, None
        if presence is not None:
            mask, reason, identity = _guard(run, state, index, mask, presence)
        reason = reason or _stop_reason(run, state, mask, prediction.iou, voxels, reference)
        if presence is not None and _kept(run, index, mask, reason, identity):
            reason = None
        if reason is not None:
            return _Chain(steps, ChainStop(seed.index, direction, state.index, index, reason))
        steps[index] = SliceResult(mask, prediction.iou, seed.index)
        state = _State(index, mask, prediction.low_res_logits, voxels, int(mask.sum()))
        index += direction


def _step(run: _Run, state: _State, index: int, reference: tuple[float, float]) -> tuple[Prediction, np.ndarray]:
    """Predict slice ``index`` from the previous slice's state.  With several candidate boxes the
    one with the best model IoU estimate wins, weighted by its intensity match when
    ``select_by_intensity`` is set.  (A box from the presence model's coarse map was tried as one
    more candidate and dropped: on small structures the map's components pulled the chain onto
    their neighbours, e.g. ct_abdomen_3mm small bowel 0.672 without it, 0.506 with it.)"""
    config = run.config
    voxels = _voxels(run.engine, run.axis, index)
    points_rc, labels = _points(state, voxels, config, run.spacing_rc)
    boxes = [_box_around(state.mask, margin, run.spacing_rc) for margin in config.box_margin_mm]
    prompt = ModelPrompt(
        points_rc=points_rc, point_labels=labels,
        mask_logits=state.logits if config.mask_prompt else None,
    )
    candidates = np.stack(boxes) if boxes else None
    predictions = run.engine.predict_many(run.axis, index, prompt, candidates)
    if config.select_by_intensity and len(predictions) > 1:
        best = max(predictions, key=lambda p: p.iou * _intensity_match(voxels[p.mask_rc], reference))
    else:
        best = max(predictions, key=lambda p: p.iou)
    return best, voxels


def _box_around(mask: np.ndarray, margin_mm: float, spacing_rc) -> np.ndarray:
    row0, col0, row1, col1 = (float(v) for v in bbox_rc(mask))
    margin_r = margin_mm / spacing_rc[0]
    margin_c = margin_mm / spacing_rc[1]
    n_rows, n_cols = mask.shape
    return np.array([max(0.0, row0 - margin_r), max(0.0, col0 - margin_c),
                     min(n_rows - 1.0, row1 + margin_r), min(n_cols - 1.0, col1 + margin_c)])


def _points(state: _State, voxels: np.ndarray, config: PropagationConfig, spacing_rc):
    points, labels = [], []
    if config.positive_points > 0:
        inside = _interior_points(state, voxels, config, spacing_rc)
        points.extend(inside)
        labels.extend([1] * len(inside))
    if config.negative_points > 0:
        ring = _ring_points(state.mask, config.negative_points, config.negative_ring_mm, spacing_rc)
        points.extend(ring)
        labels.extend([0] * len(ring))
    if not points:
        return None, None
    return np.asarray(points, dtype=float), np.asarray(labels, dtype=np.int64)


def _interior_points(state: _State, voxels: np.ndarray, config: PropagationConfig, spacing_rc) -> list:
    """Deep points of the previous mask whose intensity barely changes on the next slice."""
    depth = ndimage.distance_transform_edt(state.mask, sampling=spacing_rc)
    spread = float(state.voxels[state.mask].std())
    steady = np.abs(voxels - state.voxels) < config.consistency_lambda * spread
    allowed = (depth >= 0.5 * depth.max()) & steady
    return _spread_points(allowed, depth, config.positive_points)


def _ring_points(mask: np.ndarray, count: int, ring_mm: tuple[float, float], spacing_rc) -> list:
    """Points on the band between ``ring_mm[0]`` and ``ring_mm[1]`` outside the mask."""
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing_rc)
    band = (outside >= ring_mm[0]) & (outside <= ring_mm[1])
    return _spread_points(band, np.ones(mask.shape), count)


def _spread_points(allowed: np.ndarray, score: np.ndarray, count: int) -> list:
    """Farthest-point sampling over ``allowed``, starting from its highest ``score``."""
    rc = np.argwhere(allowed)
    if not len(rc):
        return []
    chosen = [int(np.argmax(score[allowed]))]
    distance = np.full(len(rc), np.inf)
    for _ in range(1, min(count, len(rc))):
        distance = np.minimum(distance, ((rc - rc[chosen[-1]]) ** 2).sum(axis=1))
        chosen.append(int(np.argmax(distance)))
    return [rc[n].astype(float) for n in chosen]


def _clean(mask: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Keep the parts of the prediction that touch the previous mask (all of it when none does)."""
    if not mask.any():
        return mask
    labels, count = ndimage.label(mask)
    if count > 1:
        touching = np.unique(labels[previous & mask])
        touching = touching[touching > 0]
        if len(touching):
            mask = np.isin(labels, touching)
    return mask


def _guard(run: _Run, previous: _State, index: int, mask: np.ndarray,
           presence: SlicePresence) -> tuple[np.ndarray, str | None, float | None]:
    """The presence model's checks on a carried mask: the mask with its leak trimmed, why the
    chain must stop here (None: it goes on) and the mask's identity (None: not judged)."""
    config = run.config
    if not mask.any():
        return mask, None, None
    coarse = presence.probability_rc >= run.presence.options.threshold
    if config.min_presence is not None:
        near = ndimage.binary_dilation(previous.mask, iterations=max(1, int(round(9.0 / min(run.spacing_rc)))))
        if presence.probability_rc[near].max(initial=0.0) < config.min_presence:
            return mask, STOP_ABSENT, None
    if config.leak_margin_mm is not None:
        # Keep what is near the coarse map or near the previous mask: the thin end of a
        # structure may be missing from the 4-pixel coarse map, but it lies where the mask was.
        support = coarse | previous.mask
        outside = ndimage.distance_transform_edt(~support, sampling=run.spacing_rc)
        mask = _clean(mask & (outside <= config.leak_margin_mm), previous.mask)
    identity = None
    if config.min_identity is not None:
        identity = mask_identity(run.engine, run.presence, run.axis, index, mask, config.identity_min_cells)
        if identity is not None and identity < config.min_identity:
            return mask, STOP_IDENTITY, identity
    return mask, None, identity


def _kept(run: _Run, index: int, mask: np.ndarray, reason: str | None, identity: float | None) -> bool:
    """Whether a mask as like the structure as ``keep_identity`` overrules the stop ``reason``.
    ``identity``: the guard's, when it judged the mask; judged here (whatever the mask's size) only
    when a rule that can be overruled fired, so most slices pay for one identity at most."""
    keep = run.config.keep_identity
    if keep is None or reason not in run.config.keep_reasons:
        return False
    if identity is None:
        identity = mask_identity(run.engine, run.presence, run.axis, index, mask)
    return identity >= keep


def _stop_reason(run: _Run, previous: _State, mask: np.ndarray, iou: float, voxels: np.ndarray,
                 reference: tuple[float, float]) -> str | None:
    """Why ``mask`` is not the object any more, or None.  ``reference`` is the seed's central
    intensity range."""
    config = run.config
    area = int(mask.sum())
    if area == 0 or area * run.pixel_mm2 < config.min_area_mm2:
        return STOP_EMPTY
    if config.min_iou is not None and iou < config.min_iou:
        return STOP_IOU
    if config.min_overlap is not None:
        overlap = (mask & previous.mask).sum() / (mask | previous.mask).sum()
        if overlap < config.min_overlap:
            return STOP_OVERLAP
    if config.max_growth is not None and area > config.max_growth * previous.area:
        return STOP_GROWTH
    if config.min_shrink is not None and area < config.min_shrink * previous.area:
        return STOP_COLLAPSE
    match = config.min_intensity_match
    if match is not None and _intensity_match(voxels[mask], reference) < match:
        return STOP_INTENSITY
    return None


def _reconcile(chains: list[_Chain], rule: str) -> dict[int, SliceResult]:
    """One result per slice: where two chains reached a slice, the nearest seed's wins (``nearest``)
    or the one with the higher IoU estimate (``iou``)."""
    chosen: dict[int, SliceResult] = {}
    for chain in chains:
        for index, step in chain.steps.items():
            other = chosen.get(index)
            if other is None or _prefer(step, other, index, rule):
                chosen[index] = step
    return chosen


def _prefer(candidate: SliceResult, current: SliceResult, index: int, rule: str) -> bool:
    if rule == "iou":
        return candidate.iou > current.iou
    distance_new = abs(index - candidate.seed)
    distance_old = abs(index - current.seed)
    if distance_new != distance_old:
        return distance_new < distance_old
    return candidate.iou > current.iou


DIRECTIONS = ("both", "forward", "backward", "between")


def propagation_range(seeds: list[int], direction: str, forward_sign: int, max_slices: int,
                      n_slices: int) -> tuple[int, int]:
    """The inclusive slice range a GUI's propagation request covers.

    ``direction``: ``both`` (away from the seeds both ways), ``forward``/``backward`` (the way the
    view's slice slider goes up/down; ``forward_sign`` is +1 when the slice index grows that way),
    or ``between`` (only between the first and the last seed).  ``max_slices`` bounds how far
    beyond the seeds propagation may go (0: no bound).
    """
    if direction not in DIRECTIONS:
        raise InputError(f"unknown propagation direction {direction!r}", None, f"use one of {', '.join(DIRECTIONS)}")
    if not seeds:
        raise InputError("no annotated slice to propagate from", None, "accept at least one slice first")
    low, high = min(seeds), max(seeds)
    reach_low = 0 if max_slices == 0 else max(0, low - max_slices)
    reach_high = n_slices - 1 if max_slices == 0 else min(n_slices - 1, high + max_slices)
    if direction == "between":
        if len(set(seeds)) < 2:
            raise InputError("'between' needs at least two annotated slices", None,
                             "accept a second slice, or propagate in both directions")
        return (low, high)
    if direction == "both":
        return (reach_low, reach_high)
    up = (direction == "forward") == (forward_sign > 0)
    return (low, reach_high) if up else (reach_low, high)
