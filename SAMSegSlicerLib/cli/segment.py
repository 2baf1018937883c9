"""``samseg segment IMAGE --prompts PROMPTS.json --out OUT``: masks from boxes and clicks on given slices."""

from __future__ import annotations

import numpy as np

from ..engine import ModelPrompt
from ..prompt_file import read_prompts
from ..volume import write_labelmap
from .common import add_model_args, add_volume_args, check_output_path, engine_from_args, open_volume, report


def register(subparsers) -> None:
    parser = subparsers.add_parser("segment", help="segment slices from a prompts file (boxes, clicks)")
    parser.add_argument("image")
    parser.add_argument("--prompts", required=True, help="JSON prompts file (format in the README)")
    parser.add_argument("--out", required=True, help="output label map (.nii.gz, .nrrd, .seg.nrrd, .mha)")
    add_model_args(parser)
    add_volume_args(parser, axis=False)
    parser.set_defaults(handler=run)


def run(args) -> int:
    out = check_output_path(args.out)
    volume = open_volume(args.image)
    prompts = read_prompts(args.prompts, volume)
    engine = engine_from_args(args, volume)
    labels_kji = np.zeros(volume.voxels_kji.shape, dtype=np.uint16)
    for entry in prompts:
        points = np.concatenate([entry.positive_rc, entry.negative_rc])
        point_labels = np.array([1] * len(entry.positive_rc) + [0] * len(entry.negative_rc))
        prediction = engine.predict(entry.axis, entry.index, ModelPrompt(
            points_rc=points if len(points) else None, point_labels=point_labels if len(points) else None,
            box_rc=entry.box_rc))
        volume.axes(entry.axis).stack(labels_kji)[entry.index][prediction.mask_rc] = entry.label
        report(f"label {entry.label}: {entry.axis} slice {entry.index}: {int(prediction.mask_rc.sum())} pixels, "
               f"model IoU estimate {prediction.iou:.2f}")
    write_labelmap(out, labels_kji, volume)
    report(f"wrote {out}")
    return 0
