"""SAM^assist: learn the user's task from a few annotated slices by tuning only the prompt encoder.

After the user has finished a few slices of a structure, :func:`learn_prompts` adapts the
model to *that* structure.  The image encoder and the mask decoder stay frozen; what is
learned are the prompt encoder's type embeddings -- the vectors it adds to the positional
encoding of a positive click, a negative click, a box corner and the not-a-point padding
(256 numbers each for LiteMedSAM).  The positional Gaussian matrix stays stock: it also
shapes the image's dense positional encoding, so learning it would change every cached
decoder context.

Prompt kinds (:data:`PROMPT_KINDS`), each with its own rows of the embedding table:

* ``points`` -- clicks alone (positive, negative, not-a-point rows); for point-capable models.
* ``box+points`` -- a box with clicks: the click rows and a second pair of corner rows used
  only when clicks come with the box.  This is what a box-only model such as LiteMedSAM gets
  from the session (boxes proposed around the clicks, the clicks as points with them), so a
  click reads as "this structure, here" while a box drawn alone is read exactly as before.
* ``box`` -- boxes alone (the plain corner rows).

Training reuses the slices' cached image embeddings and the decoder's per-slice
:class:`~.models.fast_decoder.ImageContext`.  Every step decodes, in one batch, one prompt
per training slice sampled from its mask as SAM^Med samples them -- positive points uniform /
central (weighted by the squared distance to the border) / on the border, 1..N positives and
0..M negatives, boxes jittered within ``[-d_in, +d_out]``, or rectangles of the structure's
size around the first click as the session proposes them while the adapter is in use -- and
minimises Dice + BCE on the decoder's low-resolution logits
with Adam.  With three or more annotated slices the last is held back and the table with the
lowest loss on it is kept (early stopping).

The result, a :class:`PromptAdapter`, is a few kilobytes; :func:`save_adapter` writes it as a
safetensors file with the model it belongs to and a checksum.  Applying it never modifies the
model: ``SamModel.decode`` adds the adapter's offsets to the stock prompt tokens while
``model.prompt_adapter`` is set (:meth:`PromptAdapter.adjust`), so switching it off
(:func:`set_prompt_adapter` with ``None``, or leaving :func:`adapter_applied`) gives the stock
model back bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from .engine import SliceEngine
from .errors import InputError, ModelError
from .geometry import bbox_rc
from .models.sam_model import ResizeInfo, SamModel
from .output import write_bytes
from .safetensors_file import metadata as safetensors_metadata
from .safetensors_file import read_file
from .worker import CancelToken

ProgressCallback = Callable[[int, int], None]  # (steps done, steps planned)

PROMPT_KINDS = ("points", "box+points", "box")
FORMAT = "samseg-prompt-adapter-1"
# Rows of the embedding table: the prompt encoder's point_embeddings (negative, positive, box
# top-left, box bottom-right), its not-a-point embedding, then the corners of a box with clicks.
NEGATIVE, POSITIVE, CORNER_TOP_LEFT, CORNER_BOTTOM_RIGHT, NOT_A_POINT, \
    CORNER_TOP_LEFT_WITH_POINTS, CORNER_BOTTOM_RIGHT_WITH_POINTS = range(7)
TABLE_ROWS = 7
_KIND_ROWS = {
    "points": (NEGATIVE, POSITIVE, NOT_A_POINT),
    "box+points": (NEGATIVE, POSITIVE, CORNER_TOP_LEFT_WITH_POINTS, CORNER_BOTTOM_RIGHT_WITH_POINTS),
    "box": (CORNER_TOP_LEFT, CORNER_BOTTOM_RIGHT),
}


@dataclass(frozen=True)
class AnnotatedSlice:
    """A finished slice of one structure: ``mask_rc`` (bool, the slice's shape) on ``axis`` slice ``index``."""

    axis: str
    index: int
    mask_rc: np.ndarray


@dataclass(frozen=True)
class LearnOptions:
    """How :func:`learn_prompts` samples prompts and optimises (defaults measured, see the README).

    Each step decodes ``prompts_per_slice`` prompts on every training slice, all of one kind
    and with the same number of points: 1..``max_positive`` positives and, with probability
    ``negative_fraction``, 1..``max_negative`` negatives.  The first positive is drawn by
    ``first_click`` (probabilities of the centre / uniform / boundary schemes), the others
    uniformly.  A ``box`` prompt is the object's bounding box with each side moved by
    ``-box_jitter_in`` .. ``+box_jitter_out`` times the box's size (inwards .. outwards); a
    ``box+points`` prompt's box is, with probability ``click_box_fraction``, a rectangle
    centred on the first click of the structure's size (:attr:`PromptAdapter.box_half_mm`)
    times a factor drawn log-uniformly from ``click_box_scales`` -- what the session proposes
    around a click while the adapter is in use -- else a jittered bounding box.  With a
    held-back slice its loss is checked every ``validate_every`` steps, and learning stops
    after ``patience`` checks without improvement.
    """

    steps: int = 60
    prompts_per_slice: int = 1
    learning_rate: float = 0.05
    max_positive: int = 3
    max_negative: int = 2
    negative_fraction: float = 0.5
    first_click: tuple[float, float, float] = (0.5, 0.35, 0.15)
    box_jitter_in: float = 0.05
    box_jitter_out: float = 0.15
    click_box_fraction: float = 1.0
    click_box_scales: tuple[float, float] = (0.6, 1.25)
    validate_every: int = 5
    patience: int = 3
    seed: int = 0


@dataclass
class PromptAdapter:
    """Learned prompt embeddings for one structure and one model.

    ``table``: (7, C) float32, rows as the module constants (``NEGATIVE`` .. ``CORNER_BOTTOM_RIGHT_WITH_POINTS``);
    rows the ``prompt_kinds`` do not use hold the stock values.  ``box_half_mm``: the
    structure's half height and width on the slices learned from (mean of their bounding
    boxes), which sizes the boxes a box-only model gets around a first click.  ``info``:
    JSON-able facts about the learning (slices, steps, losses, seconds) kept in the file.
    """

    model_weights: str
    table: np.ndarray
    prompt_kinds: tuple[str, ...]
    info: dict = field(default_factory=dict)
    box_half_mm: tuple[float, float] | None = None

    @property
    def checksum(self) -> str:
        return _digest(self.model_weights, self.prompt_kinds, self.info, self.table, self.box_half_mm)

    def adjust(self, prompt_encoder, sparse, points, has_boxes: bool):
        """The sparse prompt tokens with this adapter's embeddings in place of the stock ones.

        ``sparse``: the stock encoder's (B, N, C) tokens for ``points`` ((coords, labels) or
        None; labels 1, 0, or -1 for padding) and, when ``has_boxes``, two box corners at the end.
        Called by :meth:`~.models.SamModel.decode` while the adapter is in use.
        """
        import torch

        batch = sparse.shape[0]
        rows = []
        if points is not None:
            labels = points[1]
            rows.append(torch.where(labels == 1, POSITIVE, torch.where(labels == 0, NEGATIVE, NOT_A_POINT)))
            if not has_boxes:
                rows.append(torch.full((batch, 1), NOT_A_POINT, device=sparse.device))
        if has_boxes:
            corners = (CORNER_TOP_LEFT_WITH_POINTS, CORNER_BOTTOM_RIGHT_WITH_POINTS) if points is not None else \
                (CORNER_TOP_LEFT, CORNER_BOTTOM_RIGHT)
            rows.append(torch.tensor(corners, device=sparse.device).expand(batch, 2))
        offsets = torch.from_numpy(self.table - stock_table(prompt_encoder)).to(sparse.device, sparse.dtype)
        return sparse + offsets[torch.cat(rows, dim=1).long()]


def stock_table(prompt_encoder) -> np.ndarray:
    """A prompt encoder's own (7, C) table (the corners of a box with clicks start as the plain corners)."""
    rows = [e.weight for e in prompt_encoder.point_embeddings] + [prompt_encoder.not_a_point_embed.weight] + \
        [prompt_encoder.point_embeddings[2].weight, prompt_encoder.point_embeddings[3].weight]
    return np.concatenate([r.detach().cpu().numpy() for r in rows], axis=0).astype(np.float32)


def default_prompt_kinds(model: SamModel) -> tuple[str, ...]:
    """What to learn for a model: box-only models get clicks as evidence for boxes (the session
    proposes boxes around them and passes the clicks along), so they learn ``box+points``;
    point-capable models learn ``points``."""
    return ("box+points",) if model.spec.box_only else ("points",)


# --- applying ----------------------------------------------------------------------------------
def model_weights_id(model: SamModel) -> str:
    """The part of a model id that names its weights (the encoder's precision does not matter here)."""
    return model.model_id.rsplit("/", 1)[0]


def set_prompt_adapter(model: SamModel, adapter: PromptAdapter | None) -> None:
    """Use ``adapter`` for every decode of ``model`` from now on; ``None`` switches back to the
    stock model.  The model's weights are never touched.  Call it where no decode is in flight
    (:func:`adapter_applied` goes through the engine's worker)."""
    if adapter is not None:
        if adapter.model_weights != model_weights_id(model):
            raise ModelError(f"the prompt adapter was learned with {adapter.model_weights}, not with "
                             f"{model_weights_id(model)}", None, "learn it again with this model")
        expected = (TABLE_ROWS, model.prompt_encoder.embed_dim)
        if adapter.table.shape != expected:
            raise ModelError(f"the prompt adapter's table is {adapter.table.shape}, the model needs {expected}",
                             None, "learn it again with this model")
    model.prompt_adapter = adapter


@contextmanager
def adapter_applied(engine: SliceEngine, adapter: PromptAdapter | None) -> Iterator[PromptAdapter | None]:
    """Use ``adapter`` on the engine's model inside the block (``None``: the stock model); what
    was in use before comes back afterwards."""
    model = engine.model
    previous = model.prompt_adapter
    engine.worker.run(lambda: set_prompt_adapter(model, adapter))
    try:
        yield adapter
    finally:
        engine.worker.run(lambda: set_prompt_adapter(model, previous))


# --- the file ----------------------------------------------------------------------------------
def _digest(model_weights: str, kinds: tuple[str, ...], info: dict, table: np.ndarray,
            box_half_mm: tuple[float, float] | None) -> str:
    digest = hashlib.sha256()
    half = None if box_half_mm is None else [float(v) for v in box_half_mm]
    digest.update(json.dumps([model_weights, list(kinds), info, half], sort_keys=True).encode())
    digest.update(np.ascontiguousarray(table, "<f4").tobytes())
    return "sha256:" + digest.hexdigest()


def save_adapter(adapter: PromptAdapter, path: str | Path) -> Path:
    """Write ``adapter`` as a safetensors file (atomically: a complete file or none)."""
    from safetensors.numpy import save

    metadata = {
        "format": FORMAT,
        "model_weights": adapter.model_weights,
        "prompt_kinds": json.dumps(list(adapter.prompt_kinds)),
        "info": json.dumps(adapter.info, sort_keys=True),
        "box_half_mm": json.dumps(None if adapter.box_half_mm is None else [float(v) for v in adapter.box_half_mm]),
        "checksum": adapter.checksum,
    }
    data = save({"table": np.ascontiguousarray(adapter.table, "<f4")}, metadata=metadata)
    return write_bytes(path, data)


def load_adapter(path: str | Path) -> PromptAdapter:
    """Read and verify an adapter file: anything damaged or foreign is refused with one
    :class:`~.errors.ModelError` line (an unreadable path with an :class:`~.errors.InputError`)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    hint = "the file is damaged or not a samseg prompt adapter; learn it again (samseg assist learn)"
    data = read_file(path, "prompt adapter")
    try:
        tensors = load(data)
        metadata = safetensors_metadata(data)
        kinds = tuple(json.loads(metadata["prompt_kinds"]))
        info = json.loads(metadata["info"])
        half = json.loads(metadata["box_half_mm"])
        box_half_mm = None if half is None else (float(half[0]), float(half[1]))
        model_weights, checksum = str(metadata["model_weights"]), metadata["checksum"]
    except (SafetensorError, ValueError, KeyError, TypeError, OverflowError, IndexError):
        raise ModelError("prompt adapter file is not readable", str(path), hint) from None
    table = tensors.get("table")
    if metadata.get("format") != FORMAT or table is None or table.ndim != 2 or table.shape[0] != TABLE_ROWS \
            or table.dtype != np.float32 or not isinstance(info, dict) or any(k not in PROMPT_KINDS for k in kinds):
        raise ModelError("file is not a samseg prompt adapter", str(path), hint)
    adapter = PromptAdapter(model_weights, np.array(table), kinds, info, box_half_mm)
    if adapter.checksum != checksum:
        raise ModelError("prompt adapter file fails its checksum", str(path), hint)
    return adapter


# --- sampling ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _SliceData:
    """One annotated slice prepared for training: where prompts may fall, and the target logits' mask."""

    index: int
    inside_rc: np.ndarray      # (N, 2) pixels of the object
    centre_weight: np.ndarray  # (N,) sampling weight of each inside pixel for "centre" points
    boundary_rc: np.ndarray    # (M, 2) object pixels on its border
    outside_rc: np.ndarray     # (K, 2) background pixels near the object
    box_rc: np.ndarray         # (4,) inclusive bounding box
    target: object             # torch (1, rows, cols) float target in the low-res frame (valid part only)
    info: ResizeInfo
    spacing_rc: tuple[float, float]


def _prepare(mask_rc: np.ndarray, index: int, info: ResizeInfo, low_res_rc: tuple[int, int],
             spacing_rc: tuple[float, float]) -> _SliceData:
    import torch
    import torch.nn.functional as F

    mask = np.asarray(mask_rc, bool)
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    inside = np.argwhere(mask)
    weight = distance[mask] ** 2
    boundary = np.argwhere(mask & (distance <= 1.5))
    box = bbox_rc(mask)
    reach = max(3, int(round(0.25 * max(box[2] - box[0] + 1, box[3] - box[1] + 1))))
    near = ndimage.binary_dilation(mask, iterations=reach) & ~mask
    outside = np.argwhere(near)
    target = torch.from_numpy(mask.astype(np.float32))[None, None]
    target = F.interpolate(target, size=low_res_rc, mode="bilinear", align_corners=False,
                           antialias=low_res_rc[0] < mask.shape[0])
    return _SliceData(int(index), inside, weight / weight.sum(), boundary if len(boundary) else inside,
                      outside, box, (target[0] > 0.5).float(), info, spacing_rc)


def _positive_point(data: _SliceData, scheme: str, rng: np.random.Generator) -> np.ndarray:
    if scheme == "centre":
        return data.inside_rc[rng.choice(len(data.inside_rc), p=data.centre_weight)]
    if scheme == "boundary":
        return data.boundary_rc[rng.integers(len(data.boundary_rc))]
    return data.inside_rc[rng.integers(len(data.inside_rc))]


def _sample_prompt(data: _SliceData, kind: str, positives: int, negatives: int, options: LearnOptions,
                   rng: np.random.Generator, box_half_mm: tuple[float, float]):
    """Points (rc, labels) and/or a box (rc) of one sampled prompt."""
    points, labels = [], []
    if kind != "box":
        schemes = ("centre", "uniform", "boundary")
        first = schemes[rng.choice(3, p=options.first_click)]
        points.append(_positive_point(data, first, rng))
        points += [_positive_point(data, "uniform", rng) for _ in range(positives - 1)]
        labels += [1] * positives
        if negatives and len(data.outside_rc):
            points += [data.outside_rc[rng.integers(len(data.outside_rc))] for _ in range(negatives)]
            labels += [0] * negatives
    box = None
    if kind == "box+points" and rng.random() < options.click_box_fraction:
        scale = np.exp(rng.uniform(*np.log(options.click_box_scales)))
        half = scale * np.asarray(box_half_mm) / np.asarray(data.spacing_rc)
        box = np.concatenate([points[0] - half, points[0] + half]).astype(np.float32)
        shape = data.info.original_rc
        box = np.clip(box, 0, [shape[0] - 1, shape[1] - 1, shape[0] - 1, shape[1] - 1]).astype(np.float32)
    elif kind != "points":
        size = np.array([data.box_rc[2] - data.box_rc[0] + 1, data.box_rc[3] - data.box_rc[1] + 1] * 2, np.float32)
        move = rng.uniform(-options.box_jitter_in, options.box_jitter_out, size=4).astype(np.float32) * size
        box = data.box_rc + move * np.array([-1, -1, 1, 1], np.float32)
        shape = data.info.original_rc
        box = np.clip(box, 0, [shape[0] - 1, shape[1] - 1, shape[0] - 1, shape[1] - 1]).astype(np.float32)
    return (np.array(points, np.float32).reshape(-1, 2), np.array(labels, np.int64)), box


# --- learning ----------------------------------------------------------------------------------
class _Trainer:
    """The prompt embeddings as one trainable (7, C) table, and the frozen decoder run against it."""

    def __init__(self, model: SamModel):
        import torch

        self.model = model
        self.stock = torch.from_numpy(stock_table(model.prompt_encoder)).to(model.device)
        self.table = self.stock.clone().requires_grad_(True)
        with torch.no_grad():
            self.dense_pe = model.prompt_encoder.get_dense_pe().clone()

    def context(self, embedding: np.ndarray):
        import torch

        from .models import fast_decoder

        with torch.no_grad():
            tensor = torch.from_numpy(np.array(embedding, dtype=np.float32)).to(self.model.device)
            return fast_decoder.image_context(self.model.mask_decoder, self.model.prompt_encoder, self.dense_pe,
                                              tensor.reshape(1, *tensor.shape[-3:]))

    def sparse(self, coords_xy, rows):
        """Sparse prompt tokens (B, N, C) for model-frame coordinates and table rows (B, N), computed
        as the stock prompt encoder computes them, but from the trainable table."""
        import torch

        encoder = self.model.prompt_encoder
        with torch.no_grad():
            pe = encoder.pe_layer.forward_with_coords(coords_xy + 0.5, encoder.input_image_size)
            pe = pe * (rows != NOT_A_POINT).unsqueeze(-1)
        return pe + self.table[rows]

    def decode(self, context, sparse):
        from .models import fast_decoder

        return fast_decoder.decode(self.model.mask_decoder, context, sparse, None, False)[0][:, 0]


def _batch(data: _SliceData, prompts, device):
    """Coordinates (B, N, 2) and table rows (B, N) of prompts with the same number of points, laid
    out as the prompt encoder lays them out: points, a not-a-point pad when there is no box, corners."""
    import torch

    coords, rows = [], []
    for (points_rc, labels), box_rc in prompts:
        xy = data.info.rc_to_xy(points_rc) if len(points_rc) else np.zeros((0, 2), np.float32)
        row = list(np.where(labels == 1, POSITIVE, NEGATIVE))
        if box_rc is None:
            xy = np.concatenate([xy, np.zeros((1, 2), np.float32)])
            row.append(NOT_A_POINT)
        else:
            xy = np.concatenate([xy, data.info.box_rc_to_xyxy(box_rc).reshape(2, 2)])
            row += [CORNER_TOP_LEFT_WITH_POINTS, CORNER_BOTTOM_RIGHT_WITH_POINTS] if len(points_rc) else \
                [CORNER_TOP_LEFT, CORNER_BOTTOM_RIGHT]
        coords.append(xy)
        rows.append(row)
    return (torch.as_tensor(np.stack(coords), dtype=torch.float32, device=device),
            torch.as_tensor(np.array(rows), dtype=torch.int64, device=device))


def _loss(logits, target):
    """Mean over the batch of soft Dice + BCE on the valid part of the low-res logits."""
    import torch.nn.functional as F

    rows, cols = target.shape[-2:]
    logits = logits[:, :rows, :cols]
    target = target.expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(1, 2))
    probability = logits.sigmoid()
    overlap = (probability * target).sum(dim=(1, 2))
    dice = 1 - (2 * overlap + 1) / (probability.sum(dim=(1, 2)) + target.sum(dim=(1, 2)) + 1)
    return (bce + dice).mean()


def _check_slices(engine: SliceEngine, slices: Sequence[AnnotatedSlice]) -> None:
    if not slices:
        raise InputError("no annotated slices to learn from", None, "finish at least one slice of the structure")
    axes = {s.axis for s in slices}
    if len(axes) != 1:
        raise InputError(f"annotated slices lie on several axes ({', '.join(sorted(axes))})", None,
                         "learn from slices of one axis")
    for s in slices:
        shape = engine.slice_shape(s.axis)
        engine.volume.axes(s.axis).check_index(s.index)
        if np.asarray(s.mask_rc).shape != shape:
            raise InputError(f"{s.axis} slice {s.index}: mask is {np.asarray(s.mask_rc).shape}, slice is {shape}",
                             None, "give masks on the slice's own pixels")
        if not np.asarray(s.mask_rc).any():
            raise InputError(f"{s.axis} slice {s.index} holds no annotation", None,
                             "learn only from slices where the structure is drawn")


def check_kinds(prompt_kinds: Sequence[str]) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(prompt_kinds))
    unknown = [k for k in kinds if k not in PROMPT_KINDS]
    if not kinds or unknown:
        raise InputError(f"unknown prompt kind(s) {', '.join(unknown) or '(none)'}", None,
                         f"use some of {', '.join(PROMPT_KINDS)}")
    return kinds


def learn_prompts(engine: SliceEngine, annotated_slices: Sequence[AnnotatedSlice],
                  prompt_kinds: Sequence[str] | None = None, options: LearnOptions = LearnOptions(),
                  progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> PromptAdapter:
    """Learn prompt embeddings for the structure drawn on ``annotated_slices`` (all on one axis).

    ``prompt_kinds``: some of :data:`PROMPT_KINDS` (default :func:`default_prompt_kinds`).
    Runs on the engine's worker from the slices' cached embeddings; the model is never
    changed (the trainable table is a copy: apply the result with :func:`adapter_applied` or
    :func:`set_prompt_adapter`).  With three or more slices the last one is held back for
    early stopping.  Deterministic for a given ``options.seed``; ``progress(step, steps)``
    after every step; :class:`~.errors.Cancelled` when ``cancel`` is set.
    """
    kinds = check_kinds(default_prompt_kinds(engine.model) if prompt_kinds is None else prompt_kinds)
    _check_slices(engine, annotated_slices)
    if options.steps < 1:
        raise InputError(f"learning needs at least one step, got {options.steps}", None, "e.g. 60 steps")
    return engine.worker.run(lambda: _learn(engine, list(annotated_slices), kinds, options, progress, cancel))


def _stack_contexts(contexts: list, repeats: int):
    """Several slices' :class:`~.models.fast_decoder.ImageContext` as one batch, each repeated ``repeats`` times."""
    import torch

    from .models.fast_decoder import ImageContext, ProjectedImage

    def stack(tensors):
        return torch.cat(list(tensors)).repeat_interleave(repeats, dim=0)

    first = ProjectedImage(**{name: stack(getattr(c.first, name) for c in contexts)
                              for name in ("k", "v", "q", "base")})
    return ImageContext(stack(c.image_tokens for c in contexts), contexts[0].pe, first, contexts[0].size_hw)


def _learn(engine: SliceEngine, slices: list[AnnotatedSlice], kinds: tuple[str, ...], options: LearnOptions,
           progress: ProgressCallback | None, cancel: CancelToken | None) -> PromptAdapter:
    import torch

    started = time.perf_counter()
    model = engine.model
    axis = slices[0].axis
    engine.encode(axis, [s.index for s in slices], cancel=cancel)
    info = model.resize_info(engine.slice_shape(axis))
    low_res_rc = (max(1, round(info.resized_rc[0] * model.low_res_size[0] / info.input_size)),
                  max(1, round(info.resized_rc[1] * model.low_res_size[1] / info.input_size)))
    spacing_rc = engine.volume.axes(axis).spacing_rc(engine.volume.spacing_ijk)
    held_back = slices[-1:] if len(slices) >= 3 else []
    training = slices[:len(slices) - len(held_back)]
    trainer = _Trainer(model)
    prepared = [(_prepare(s.mask_rc, s.index, info, low_res_rc, spacing_rc),
                 trainer.context(engine.embedding(axis, s.index))) for s in slices]
    train_items, held_items = prepared[:len(training)], prepared[len(training):]
    rng = np.random.default_rng(options.seed)
    box_half_mm = structure_half_mm([s.mask_rc for s in training], spacing_rc)
    validation = [(data, context, _batch(data, [_sample_prompt(data, kind, 1, 0, options, rng, box_half_mm)
                                                for kind in kinds for _ in range(2)], model.device))
                  for data, context in held_items]
    learned = torch.zeros(TABLE_ROWS, 1, device=model.device)
    learned[sorted({row for kind in kinds for row in _KIND_ROWS[kind]})] = 1
    trainer.table.register_hook(lambda grad: grad * learned)
    optimiser = torch.optim.Adam([trainer.table], lr=options.learning_rate)
    context = _stack_contexts([c for _, c in train_items], options.prompts_per_slice)
    target = torch.cat([data.target for data, _ in train_items]).repeat_interleave(options.prompts_per_slice, dim=0)
    best_loss, best_table, best_step, since_best = float("inf"), trainer.table.detach().clone(), 0, 0
    losses = []
    for step in range(options.steps):
        if cancel is not None:
            cancel.raise_if_cancelled()
        kind = kinds[step % len(kinds)]
        positives = int(rng.integers(1, options.max_positive + 1)) if kind != "box" else 0
        negatives = int(rng.integers(1, options.max_negative + 1)) \
            if kind != "box" and options.max_negative and rng.random() < options.negative_fraction else 0
        coords, rows = zip(*(_batch(data, [_sample_prompt(data, kind, positives, negatives, options, rng,
                                                          box_half_mm)
                                           for _ in range(options.prompts_per_slice)], model.device)
                             for data, _ in train_items))
        optimiser.zero_grad(set_to_none=True)
        loss = _loss(trainer.decode(context, trainer.sparse(torch.cat(coords), torch.cat(rows))), target)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        if progress:
            progress(step + 1, options.steps)
        if validation and ((step + 1) % options.validate_every == 0 or step + 1 == options.steps):
            with torch.no_grad():
                held = float(np.mean([float(_loss(trainer.decode(c, trainer.sparse(*batch)), data.target))
                                      for data, c, batch in validation]))
            if held < best_loss:
                best_loss, best_table, best_step, since_best = held, trainer.table.detach().clone(), step + 1, 0
            else:
                since_best += 1
                if since_best >= options.patience:
                    break
    table = best_table if validation else trainer.table.detach()
    table = torch.where(learned > 0, table, trainer.stock)
    adapter_info = {
        "axis": axis, "slices": [s.index for s in training], "held_back": [s.index for s in held_back],
        "steps": len(losses), "best_step": best_step if validation else len(losses),
        "held_back_loss": round(best_loss, 4) if validation else None,
        "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
        "seed": options.seed, "seconds": round(time.perf_counter() - started, 2),
        "volume": engine.volume.source,
    }
    return PromptAdapter(model_weights_id(model), table.cpu().numpy().astype(np.float32), kinds, adapter_info,
                         box_half_mm)


def structure_half_mm(masks_rc: Sequence[np.ndarray], spacing_rc: tuple[float, float]) -> tuple[float, float]:
    """Mean half height and width, in mm, of the masks' bounding boxes."""
    boxes = np.array([bbox_rc(np.asarray(mask)) for mask in masks_rc], dtype=np.float64)
    half = np.mean((boxes[:, 2:] - boxes[:, :2] + 1) * np.asarray(spacing_rc) / 2, axis=0)
    return (round(float(half[0]), 3), round(float(half[1]), 3))


# --- choosing slices ---------------------------------------------------------------------------
def training_slices(truth_stack: np.ndarray, count: int) -> list[int]:
    """SAM^Med's choice of slices to learn from: the ``count`` slices holding the label that lie
    nearest to its median slice (ties to the lower index), in order.  ``truth_stack`` is a
    (slice, row, col) bool stack along the axis."""
    holding = np.flatnonzero(np.asarray(truth_stack).reshape(len(truth_stack), -1).any(axis=1))
    if not len(holding):
        raise InputError("the label is on no slice", None, "choose a label that is in the label map")
    median = int(holding[len(holding) // 2])
    return sorted(sorted((int(i) for i in holding), key=lambda i: (abs(i - median), i))[:max(1, int(count))])
