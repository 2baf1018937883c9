"""The slice engine: window -> preprocess -> encode (through the cache) -> decode prompts.

Decoding never re-encodes: a slice is encoded once per (volume, axis, model, window) and the
embedding is reused from memory or disk.  Only the mask that is asked for is decoded and
upsampled, straight from the decoder's low-resolution logits to the slice's own pixels.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .cache import CacheKey, EmbeddingCache
from .errors import Cancelled, PromptError
from .models import SamModel
from .volume import Volume
from .window import IntensityWindow
from .worker import BACKGROUND, CancelToken, TorchWorker, shared_worker

if TYPE_CHECKING:
    from .models.fast_decoder import ImageContext

ProgressCallback = Callable[[int, int], None]  # (done, total)
CONTEXTS_KEPT = 4


@dataclass(frozen=True)
class ModelPrompt:
    """What the model is given on one slice, in slice pixel coordinates.

    ``points_rc``: (N, 2) rows/cols with ``point_labels`` 1 (object) or 0 (background);
    ``box_rc``: (row_min, col_min, row_max, col_max); ``mask_logits``: the decoder's
    low-resolution logits from an earlier prediction on the same slice.
    """

    points_rc: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    box_rc: np.ndarray | None = None
    mask_logits: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        return (self.points_rc is None or len(self.points_rc) == 0) and self.box_rc is None


@dataclass(frozen=True)
class Prediction:
    axis: str
    index: int
    mask_rc: np.ndarray
    low_res_logits: np.ndarray
    iou: float


@dataclass
class EngineStats:
    slices_encoded: int = 0
    encode_seconds: float = 0.0
    decodes: int = 0
    decode_seconds: float = 0.0
    cache_seconds: float = 0.0


def nearest_first(index: int, n_slices: int, radius: int | None = None) -> list[int]:
    """Slice indices ordered by distance from ``index`` (ties: lower first), within ``radius``."""
    radius = n_slices if radius is None else radius
    order = [index]
    for step in range(1, radius + 1):
        order += [i for i in (index - step, index + step) if 0 <= i < n_slices]
    return order


class SliceEngine:
    """Encode and decode the slices of one volume with one model and one window."""

    def __init__(self, model: SamModel, volume: Volume, window: IntensityWindow,
                 cache: EmbeddingCache | None = None, worker: TorchWorker | None = None, batch_size: int = 1):
        self.model = model
        self.volume = volume
        self.window = window
        self.cache = cache if cache is not None else EmbeddingCache()
        self.worker = worker if worker is not None else shared_worker()
        self.batch_size = max(1, int(batch_size))
        self.stats = EngineStats()
        self._contexts: OrderedDict[CacheKey, ImageContext] = OrderedDict()

    # --- slices ----------------------------------------------------------------------------
    def slice_shape(self, axis: str) -> tuple[int, int]:
        return self.volume.axes(axis).slice_shape

    def n_slices(self, axis: str) -> int:
        return self.volume.axes(axis).n_slices

    def slice_voxels(self, axis: str, index: int) -> np.ndarray:
        return self.volume.axes(axis).take(self.volume.voxels_kji, index)

    def slice_image(self, axis: str, index: int) -> np.ndarray:
        """The windowed slice in [0, 1] (a new array), as the model sees it before resizing."""
        return self.window.apply(self.slice_voxels(axis, index))

    def key(self, axis: str, index: int) -> CacheKey:
        return CacheKey(self.volume.content_hash, axis, int(index), self.model.model_id, self.window.key,
                        (self.model.prompt_encoder.embed_dim, *self.model.embedding_size))

    def is_encoded(self, axis: str, index: int) -> bool:
        return self.cache.contains(self.key(axis, index))

    # --- encoding --------------------------------------------------------------------------
    def encode(self, axis: str, indices: Iterable[int], progress: ProgressCallback | None = None,
               cancel: CancelToken | None = None) -> int:
        """Make sure the slices are in the cache; returns how many had to be encoded."""
        indices = [int(i) for i in indices]
        for index in indices:
            self.volume.axes(axis).check_index(index)
        return self.worker.run(lambda: self._encode_missing(axis, indices, progress, cancel))

    def _encode_missing(self, axis, indices, progress, cancel) -> int:
        started = time.perf_counter()
        missing = [i for i in indices if self.cache.get(self.key(axis, i)) is None]
        self.stats.cache_seconds += time.perf_counter() - started
        done = len(indices) - len(missing)
        if progress:
            progress(done, len(indices))
        for start in range(0, len(missing), self.batch_size):
            if cancel is not None:
                cancel.raise_if_cancelled()
            batch = missing[start:start + self.batch_size]
            started = time.perf_counter()
            embeddings = self.model.encode([self.slice_image(axis, i) for i in batch])
            self.stats.encode_seconds += time.perf_counter() - started
            self.stats.slices_encoded += len(batch)
            for index, embedding in zip(batch, embeddings):
                self.cache.put(self.key(axis, index), embedding)
            done += len(batch)
            if progress:
                progress(done, len(indices))
        return len(missing)

    def embedding(self, axis: str, index: int) -> np.ndarray:
        key = self.key(axis, index)
        embedding = self.cache.get(key)
        if embedding is None:
            self.encode(axis, [index])
            embedding = self.cache.get(key)
        return embedding

    def prefetch(self, axis: str, indices: Sequence[int], cancel: CancelToken | None = None,
                 progress: ProgressCallback | None = None) -> Future:
        """Encode ``indices`` in the background, in the given order, one job per slice so that
        interactive requests are served between them.  The future resolves when all are done
        (or with :class:`~.errors.Cancelled`)."""
        indices = [int(i) for i in indices if 0 <= int(i) < self.n_slices(axis)]
        cancel = cancel or CancelToken()
        result: Future = Future()
        state = {"done": 0}

        def job(index: int):
            if result.done():
                return
            if cancel.cancelled:
                result.set_exception(Cancelled("prefetch cancelled"))
                return
            try:
                self._encode_missing(axis, [index], None, None)
            except BaseException as error:  # the prefetch future carries it
                result.set_exception(error)
                return
            state["done"] += 1
            if progress:
                progress(state["done"], len(indices))
            if state["done"] == len(indices):
                result.set_result(len(indices))

        if not indices:
            result.set_result(0)
        for index in indices:
            self.worker.submit(lambda index=index: job(index), priority=BACKGROUND)
        return result

    # --- decoding --------------------------------------------------------------------------
    def _context(self, axis: str, index: int) -> ImageContext:
        key = self.key(axis, index)
        contexts = self._contexts
        if key in contexts:
            contexts.move_to_end(key)
            return contexts[key]
        context = self.model.image_context(self.embedding(axis, index))
        contexts[key] = context
        while len(contexts) > CONTEXTS_KEPT:
            contexts.popitem(last=False)
        return context

    def predict(self, axis: str, index: int, prompt: ModelPrompt) -> Prediction:
        """Decode one prompt on one slice into a mask on the slice's pixels."""
        return self.predict_many(axis, index, prompt, None)[0]

    def predict_many(self, axis: str, index: int, prompt: ModelPrompt,
                     candidate_boxes_rc: np.ndarray | None) -> list[Prediction]:
        """Decode ``prompt`` once per candidate box (or once, without candidates)."""
        self.volume.axes(axis).check_index(index)
        _check_prompt(prompt, self.slice_shape(axis), candidate_boxes_rc)
        return self.worker.run(lambda: self._predict(axis, index, prompt, candidate_boxes_rc))

    def _predict(self, axis, index, prompt: ModelPrompt, candidate_boxes_rc) -> list[Prediction]:
        context = self._context(axis, index)
        started = time.perf_counter()
        info = self.model.resize_info(self.slice_shape(axis))
        boxes_rc = candidate_boxes_rc if candidate_boxes_rc is not None else prompt.box_rc
        points_xy = None if prompt.points_rc is None or not len(prompt.points_rc) else info.rc_to_xy(prompt.points_rc)
        boxes_xyxy = None if boxes_rc is None else info.box_rc_to_xyxy(boxes_rc)
        low_res, iou = self.model.decode(context, points_xy, prompt.point_labels, boxes_xyxy, prompt.mask_logits)
        masks = self.model.low_res_to_slice(low_res[:, 0], info) > 0
        low_res_np = low_res[:, 0].cpu().numpy()
        iou_np = iou[:, 0].cpu().numpy()
        masks_np = masks.cpu().numpy()
        self.stats.decodes += len(iou_np)
        self.stats.decode_seconds += time.perf_counter() - started
        return [Prediction(axis, int(index), masks_np[n], low_res_np[n], float(iou_np[n]))
                for n in range(len(iou_np))]


def _check_prompt(prompt: ModelPrompt, shape_rc: tuple[int, int], candidate_boxes_rc) -> None:
    rows, cols = shape_rc
    if prompt.empty and candidate_boxes_rc is None:
        raise PromptError("no prompt given", None, "place a point or draw a box on the slice")
    if prompt.points_rc is not None and len(prompt.points_rc):
        points = np.asarray(prompt.points_rc, dtype=float).reshape(-1, 2)
        outside = (points[:, 0] < -0.5) | (points[:, 0] > rows - 0.5) | \
            (points[:, 1] < -0.5) | (points[:, 1] > cols - 0.5)
        if outside.any():
            r, c = points[np.argmax(outside)]
            raise PromptError(f"point (row {r:.1f}, col {c:.1f}) is outside the {rows}x{cols} slice", None,
                              "place points inside the image")
        if prompt.point_labels is None or len(prompt.point_labels) != len(points):
            raise PromptError("every point needs a label (1 object, 0 background)", None, "give one label per point")
    for box in ([prompt.box_rc] if prompt.box_rc is not None else []) + \
            (list(np.asarray(candidate_boxes_rc).reshape(-1, 4)) if candidate_boxes_rc is not None else []):
        r0, c0, r1, c1 = (float(v) for v in np.asarray(box).reshape(4))
        if r1 < r0 or c1 < c0:
            raise PromptError(f"inverted box (rows {r0:g}..{r1:g}, cols {c0:g}..{c1:g})", None,
                              "give (row_min, col_min, row_max, col_max)")
        if r1 < -0.5 or c1 < -0.5 or r0 > rows - 0.5 or c0 > cols - 0.5:
            raise PromptError(f"box (rows {r0:g}..{r1:g}, cols {c0:g}..{c1:g}) is outside the {rows}x{cols} slice",
                              None, "draw the box on the image")
