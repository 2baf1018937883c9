"""``samseg segment IMAGE --prompts PROMPTS.json --out OUT``: masks from boxes and clicks on given slices.

Each entry goes through an :class:`~..session.AnnotationSession` exactly as the same clicks in Slicer would
(box first, then positive and negative clicks), and is accepted into the label map; a later entry overwrites
an earlier one where they overlap.
"""

from __future__ import annotations

from ..prompt_file import read_prompts
from ..session import AnnotationSession
from ..volume import LABELMAP_SUFFIXES, write_labelmap
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
    out = check_output_path(args.out, [args.image, args.prompts], LABELMAP_SUFFIXES)
    volume = open_volume(args.image)
    prompts = read_prompts(args.prompts, volume)
    engine = engine_from_args(args, volume)
    session = AnnotationSession(engine)
    for entry in prompts:
        where = (entry.label, entry.axis, entry.index)
        if entry.box_rc is not None:
            session.set_box(*where, entry.box_rc)
        for point_rc in entry.positive_rc:
            session.add_point(*where, point_rc, positive=True)
        for point_rc in entry.negative_rc:
            session.add_point(*where, point_rc, positive=False)
        mask_rc = session.candidate_mask(*where)
        session.accept(*where)
        report(f"label {entry.label}: {entry.axis} slice {entry.index}: {int(mask_rc.sum())} pixels")
    labels_kji = session.labels_kji
    write_labelmap(out, labels_kji, volume)
    report(f"wrote {out}")
    return 0
