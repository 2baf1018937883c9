"""Interactive session benchmark: how long a click, a stroke or a box takes on an already-encoded slice.

    python Testing/benchmarks/bench_session.py [--repeats R] [--clicks K] [--json OUT]

On the three 512x512 axial slices of ``ct_3slice_dicom`` (liver, spine and heart labels, from
``$SAMSEG_DATA`` or ``../shared/data``), encoded beforehand (through the default disk cache),
the ``clicks`` and ``scribbles`` simulated users place K prompts per organ and slice through an
:class:`AnnotationSession`, and a box from the organ's bounding box is set once per organ and
slice.  Each prompt's latency is the wall time of its session call (validation, box proposals,
decoding, choice, post-processing, snapshot); the whole sequence is repeated ``--repeats`` times.
Then every action is undone and redone, counting the decodes and encodes that cost.

Reference, measured in the same run on the same slices and embeddings: the stock
``segment_anything``-style decode of one box -- the stock prompt encoder and ``MaskDecoder.forward``
on the embedding, then ``postprocess_masks``-style upsampling of the low-resolution logits to the
model's input size, cropping, upsampling to 512x512 and thresholding -- median of 20.

Target (issue 4): a click returns its mask in <= 50 ms median on CPU for a 512x512 slice; undo/redo
cost no encoding.  This script prints figures and ratios; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, data_dir, format_table, progress  # noqa: E402

AXIS = "axial"
ORGANS = (("liver_seg.nrrd", "liver"), ("spine_seg.nrrd", "spine"), ("heart_seg.nrrd", "heart"))
REFERENCE_REPEATS = 20


def open_case():
    from SAMSegSlicerLib.factory import EngineOptions, make_engine
    from SAMSegSlicerLib.volume import read_labelmap, read_volume

    folder = data_dir() / "ct_3slice_dicom"
    volume = read_volume(folder / "series")
    truths = {name: read_labelmap(folder / "labels" / file, volume) > 0 for file, name in ORGANS}
    engine = make_engine(volume, EngineOptions(device="cpu"))
    return engine, truths


def stock_decode_ms(engine, box_rc: np.ndarray, index: int) -> float:
    """Median ms of the stock full decode of one box (see the module docstring), on the engine's
    worker thread like every decode of the session."""
    return engine.worker.run(lambda: _stock_decode_ms(engine, box_rc, index))


def _stock_decode_ms(engine, box_rc: np.ndarray, index: int) -> float:
    import torch
    import torch.nn.functional as F

    model = engine.model
    info = model.resize_info(engine.slice_shape(AXIS))
    embedding = torch.from_numpy(np.array(engine.embedding(AXIS, index), dtype=np.float32))[None]
    box = torch.as_tensor(info.box_rc_to_xyxy(box_rc)).reshape(1, 1, 4)
    times = []
    for _ in range(REFERENCE_REPEATS):
        started = time.perf_counter()
        with torch.inference_mode():
            sparse, dense = model.prompt_encoder(points=None, boxes=box, masks=None)
            low_res, _ = model.mask_decoder(image_embeddings=embedding, image_pe=model.prompt_encoder.get_dense_pe(),
                                            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                            multimask_output=False)
            size = model.input_size
            masks = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
            masks = masks[..., : info.resized_rc[0], : info.resized_rc[1]]
            masks = F.interpolate(masks, info.original_rc, mode="bilinear", align_corners=False) > 0
        masks.numpy()
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def run_users(engine, truths, clicks: int, repeats: int):
    """Latencies (ms) and decodes per prompt kind, and the session (for undo/redo)."""
    from SAMSegSlicerLib.evaluation.simulated_user import interior_point, largest_error, medial_path
    from SAMSegSlicerLib.geometry import bbox_rc
    from SAMSegSlicerLib.session import AnnotationSession

    latencies: dict[str, list[float]] = {}
    decodes: dict[str, list[int]] = {}
    session = None
    for _ in range(repeats):
        session = AnnotationSession(engine)
        for segment, truth_kji in enumerate(truths.values(), start=1):
            truth = engine.volume.axes(AXIS).stack(truth_kji)
            for index in range(truth.shape[0]):
                truth_rc = truth[index]
                for strokes in (False, True):
                    session.clear_slice(segment, AXIS, index)
                    for step in range(clicks):
                        region, positive = (truth_rc, True) if step == 0 else \
                            largest_error(truth_rc, session.candidate_mask(segment, AXIS, index))
                        if region is None:
                            break
                        kind = ("first " if step == 0 else "corrective ") + ("stroke" if strokes else "click")
                        where_rc = medial_path(region) if strokes else interior_point(region)  # the user, not timed
                        started = time.perf_counter()
                        if strokes:
                            session.add_stroke(segment, AXIS, index, where_rc, positive)
                        else:
                            session.add_point(segment, AXIS, index, where_rc, positive)
                        latencies.setdefault(kind, []).append(1000 * (time.perf_counter() - started))
                        decodes.setdefault(kind, []).append(session.candidate(segment, AXIS, index).decodes)
                started = time.perf_counter()
                session.set_box(segment, AXIS, index, bbox_rc(truth_rc))
                latencies.setdefault("box", []).append(1000 * (time.perf_counter() - started))
                decodes.setdefault("box", []).append(1)
                session.accept(segment, AXIS, index)
    return latencies, decodes, session


def undo_redo(engine, session) -> dict:
    before = (engine.stats.decodes, engine.stats.slices_encoded)
    undo_ms, redo_ms = [], []
    while session.can_undo:
        started = time.perf_counter()
        session.undo()
        undo_ms.append(1000 * (time.perf_counter() - started))
    while session.can_redo:
        started = time.perf_counter()
        session.redo()
        redo_ms.append(1000 * (time.perf_counter() - started))
    after = (engine.stats.decodes, engine.stats.slices_encoded)
    return {"actions": len(undo_ms), "undo_ms_median": statistics.median(undo_ms),
            "redo_ms_median": statistics.median(redo_ms), "decodes": after[0] - before[0],
            "encodes": after[1] - before[1]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="times the whole prompt sequence is run (default 2)")
    parser.add_argument("--clicks", type=int, default=3, help="prompts per organ and slice, K (default 3)")
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    import torch

    progress("loading LiteMedSAM and ct_3slice_dicom ...")
    engine, truths = open_case()
    n_slices = engine.n_slices(AXIS)
    encoded = engine.encode(AXIS, range(n_slices))
    progress(f"encoded {encoded} of {n_slices} slices (the rest came from the disk cache)")
    liver = engine.volume.axes(AXIS).stack(truths["liver"])
    from SAMSegSlicerLib.geometry import bbox_rc

    reference_ms = stock_decode_ms(engine, bbox_rc(liver[1]), 1)
    progress(f"stock full decode: {reference_ms:.1f} ms; running the simulated users ...")
    latencies, decodes, session = run_users(engine, truths, args.clicks, args.repeats)
    history = undo_redo(engine, session)

    rows, figures = [], {}
    for kind in ("first click", "corrective click", "first stroke", "corrective stroke", "box"):
        if kind not in latencies:
            continue
        median = statistics.median(latencies[kind])
        mean_decodes = float(np.mean(decodes[kind]))
        figures[kind] = {"n": len(latencies[kind]), "median_ms": round(median, 2), "decodes": round(mean_decodes, 2)}
        rows.append([kind, str(len(latencies[kind])), f"{median:.1f}", f"{mean_decodes:.1f}",
                     f"{median / reference_ms:.2f}"])
    every_click = latencies["first click"] + latencies.get("corrective click", [])
    click_median = statistics.median(every_click)
    rows.append(["every click", str(len(every_click)), f"{click_median:.1f}", "",
                 f"{click_median / reference_ms:.2f}"])
    print(f"CPU: {cpu_name()}; torch threads {torch.get_num_threads()}; slices 512x512; K = {args.clicks}; "
          f"repeats {args.repeats}")
    print(f"reference: stock full decode of one box, median of {REFERENCE_REPEATS}: {reference_ms:.1f} ms")
    print(format_table(["prompt", "n", "median ms", "decodes", "x stock decode"], rows))
    print(f"undo/redo of {history['actions']} actions: median undo {history['undo_ms_median']:.3f} ms, "
          f"redo {history['redo_ms_median']:.3f} ms; decodes {history['decodes']}, encodes {history['encodes']}")
    print(f"target: click <= 50 ms median: {'yes' if click_median <= 50 else 'NO'} ({click_median:.1f} ms); "
          f"undo/redo without encoding: {'yes' if history['encodes'] == 0 and history['decodes'] == 0 else 'NO'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"reference_ms": reference_ms, "prompts": figures,
                                               "every_click_median_ms": click_median, "undo_redo": history},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
