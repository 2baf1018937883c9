"""The annotation session on real data: prompts, refinement, undo/redo, segments, commits, hooks, log, GUI mapping."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import SimpleITK as sitk

from SAMSegSlicerLib.errors import InputError, PromptError
from SAMSegSlicerLib.evaluation.masks import dice
from SAMSegSlicerLib.evaluation.simulated_user import interior_point, lasso_outline, medial_path
from SAMSegSlicerLib.factory import EngineOptions, make_engine
from SAMSegSlicerLib.geometry import AXES
from SAMSegSlicerLib.prompts import Box, Lasso, lasso_mask
from SAMSegSlicerLib.session import (
    AnnotationSession,
    SessionHooks,
    ras_to_slice_rc,
    slice_for_view,
    slice_rc_to_ras,
)
from SAMSegSlicerLib.volume import read_volume

AXIS = "axial"
SPLEEN, KIDNEY = 1, 2


@pytest.fixture(scope="module")
def organs(engine_ct3mm, ct3mm_labels):
    """The axial slice where spleen and right kidney are both large, and their truths there."""
    stack = engine_ct3mm.volume.axes(AXIS).stack(ct3mm_labels)
    both = (stack == SPLEEN).sum(axis=(1, 2)) * (stack == KIDNEY).sum(axis=(1, 2))
    index = int(np.argmax(both))
    engine_ct3mm.encode(AXIS, [index, index + 1])
    return index, stack[index] == SPLEEN, stack[index] == KIDNEY


@pytest.fixture
def session(engine_ct3mm):
    return AnnotationSession(engine_ct3mm)


def _counts(engine):
    return engine.stats.decodes, engine.stats.slices_encoded


def test_click_refine_undo_redo_without_decoding(session, engine_ct3mm, organs):
    index, spleen, _ = organs
    mask1, iou1 = session.add_point(SPLEEN, AXIS, index, interior_point(spleen))
    assert dice(mask1, spleen) > 0.75 and 0 < iou1 <= 1.05
    assert session.candidate_mask(SPLEEN, AXIS, index) is mask1
    miss = spleen & ~mask1
    corrective = interior_point(miss) if miss.any() else interior_point(mask1 & ~spleen)
    mask2, _ = session.add_point(SPLEEN, AXIS, index, corrective, positive=bool(miss.any()))
    assert mask2[int(corrective[0]), int(corrective[1])] == bool(miss.any())
    counts = _counts(engine_ct3mm)
    assert session.undo().kind == "point"
    assert session.candidate_mask(SPLEEN, AXIS, index) is mask1
    assert session.undo().kind == "point" and session.candidate_mask(SPLEEN, AXIS, index) is None
    assert session.undo() is None
    session.redo()
    session.redo()
    assert session.candidate_mask(SPLEEN, AXIS, index) is mask2 and session.redo() is None
    assert _counts(engine_ct3mm) == counts  # undo/redo: no decoding, no encoding
    assert len(session.prompts(SPLEEN, AXIS, index).points) == 2


def test_refinement_is_deterministic_and_follows_order(session, organs):
    index, spleen, _ = organs
    first, _ = session.add_point(SPLEEN, AXIS, index, interior_point(spleen))
    rows, cols = np.nonzero(first)
    edge = (rows.max(), cols[np.argmax(rows)])
    negative, _ = session.add_point(SPLEEN, AXIS, index, edge, positive=False)
    session.undo()
    again, _ = session.add_point(SPLEEN, AXIS, index, edge, positive=False)
    assert np.array_equal(again, negative)
    assert not session.can_redo  # a new action drops the undone branch
    prompts = session.prompts(SPLEEN, AXIS, index)
    assert [p.positive for p in prompts.points] == [True, False]


def test_box_then_points_then_new_box(session, organs):
    index, _, kidney = organs
    rows, cols = np.nonzero(kidney)
    box = (rows.min(), cols.min(), rows.max(), cols.max())
    boxed, _ = session.set_box(KIDNEY, AXIS, index, box)
    assert dice(boxed, kidney) > 0.85
    inside = interior_point(boxed)
    refined, _ = session.add_point(KIDNEY, AXIS, index, inside, positive=False)
    assert not refined[int(inside[0]), int(inside[1])]
    small = (rows.min(), cols.min(), (rows.min() + rows.max()) // 2, cols.max())
    replaced, _ = session.set_box(KIDNEY, AXIS, index, small)
    assert session.prompts(KIDNEY, AXIS, index).box.box_rc == tuple(float(v) for v in small)
    assert replaced[int(rows.max()) - 1:].sum() < boxed[int(rows.max()) - 1:].sum() or replaced.sum() < boxed.sum()


def test_strokes_positive_and_negative(session, organs):
    index, _, kidney = organs
    mask, _ = session.add_stroke(KIDNEY, AXIS, index, medial_path(kidney))
    assert dice(mask, kidney) > 0.85
    rows, cols = np.nonzero(mask)
    middle = int(np.median(cols))
    cut = [[rows.min(), middle], [rows.max(), middle]]
    after, _ = session.add_stroke(KIDNEY, AXIS, index, cut, positive=False)
    assert not after[rows.min():rows.max() + 1, middle].any()
    session.undo()
    assert session.candidate_mask(KIDNEY, AXIS, index) is mask


def test_lasso_then_stroke_undo_redo_and_log(engine_ct3mm, organs, tmp_path):
    index, spleen, _ = organs
    log = tmp_path / "log.jsonl"
    session = AnnotationSession(engine_ct3mm, log_path=log)
    outline = lasso_outline(spleen, np.random.default_rng(0))
    lassoed, _ = session.add_lasso(SPLEEN, AXIS, index, outline)
    assert dice(lassoed, spleen) > 0.97  # measured 0.983
    assert not (lassoed & ~lasso_mask(outline, spleen.shape)).any()  # kept inside the lasso
    prompts = session.prompts(SPLEEN, AXIS, index)
    assert prompts.items == (Lasso(tuple(map(tuple, outline))),) and prompts.box == Box(prompts.items[0].box_rc)
    rows, cols = np.nonzero(lassoed)
    cut = [[rows.min(), int(np.median(cols))], [rows.max(), int(np.median(cols))]]
    after, _ = session.add_stroke(SPLEEN, AXIS, index, cut, positive=False)
    counts = _counts(engine_ct3mm)
    assert session.undo().kind == "stroke" and session.candidate_mask(SPLEEN, AXIS, index) is lassoed
    assert session.undo().kind == "lasso" and session.candidate_mask(SPLEEN, AXIS, index) is None
    assert session.redo().kind == "lasso" and session.candidate_mask(SPLEEN, AXIS, index) is lassoed
    assert session.redo().kind == "stroke" and session.candidate_mask(SPLEEN, AXIS, index) is after
    assert _counts(engine_ct3mm) == counts  # undo/redo: no decoding, no encoding
    first = json.loads(log.read_text().splitlines()[0])
    assert first["action"] == "lasso" and first["prompt"]["type"] == "lasso" and first["decodes"] == 1
    assert len(first["prompt"]["outline_rc"]) == len(outline)


def test_segments_are_isolated(session, organs):
    index, spleen, kidney = organs
    spleen_mask, _ = session.add_point(SPLEEN, AXIS, index, interior_point(spleen))
    kidney_mask, _ = session.add_stroke(KIDNEY, AXIS, index, medial_path(kidney))
    session.add_point(KIDNEY, AXIS, index, interior_point(kidney), positive=False)
    assert session.candidate_mask(SPLEEN, AXIS, index) is spleen_mask
    session.clear_slice(KIDNEY, AXIS, index)
    assert session.candidate_mask(KIDNEY, AXIS, index) is None
    assert session.candidate_mask(SPLEEN, AXIS, index) is spleen_mask
    assert session.slices_with_candidates(SPLEEN) == [(AXIS, index)]
    assert session.candidate_mask(SPLEEN, AXIS, index + 1) is None
    assert dice(spleen_mask & kidney_mask, spleen_mask) < 0.1


@pytest.mark.parametrize("policy", ["overwrite", "keep_others"])
def test_accept_overwrite_policies_and_undo(engine_ct3mm, organs, policy):
    index, spleen, kidney = organs
    session = AnnotationSession(engine_ct3mm, overwrite=policy)
    axes = engine_ct3mm.volume.axes(AXIS)
    rows, cols = np.nonzero(kidney)  # segment 1 is drawn over the kidney too, so the two overlap
    session.set_box(SPLEEN, AXIS, index, (rows.min() - 3, cols.min() - 3, rows.max() + 3, cols.max() + 3))
    wide = session.candidate_mask(SPLEEN, AXIS, index).copy()
    assert session.accept(SPLEEN, AXIS, index) == wide.sum()
    assert session.candidate_mask(SPLEEN, AXIS, index) is None
    assert np.array_equal(axes.take(session.labels_kji, index) == SPLEEN, wide)
    kidney_mask, _ = session.add_stroke(KIDNEY, AXIS, index, medial_path(kidney))
    session.accept(KIDNEY, AXIS, index)
    labels = axes.take(session.labels_kji, index).copy()
    overlap = wide & kidney_mask
    expected = KIDNEY if policy == "overwrite" else SPLEEN
    assert overlap.any() and np.all(labels[overlap] == expected)
    assert np.all(labels[kidney_mask & ~wide] == KIDNEY)
    assert session.labels_kji.sum() == labels.sum()  # only this slice was touched
    session.undo()
    assert np.array_equal(axes.take(session.labels_kji, index) == SPLEEN, wide)
    assert session.candidate_mask(KIDNEY, AXIS, index) is kidney_mask  # the candidate is back too
    session.redo()
    assert np.array_equal(session.labels_slice(AXIS, index), labels)
    assert session.erase(KIDNEY, AXIS, index) == int((labels == KIDNEY).sum())
    session.undo()
    assert np.array_equal(axes.take(session.labels_kji, index), labels)
    with pytest.raises(ValueError):
        session.labels_kji[0, 0, 0] = 7  # read-only: only commits change labels


def test_reject_and_accept_nothing(session, organs):
    index, spleen, _ = organs
    session.add_point(SPLEEN, AXIS, index, interior_point(spleen))
    session.reject(SPLEEN, AXIS, index)
    assert session.candidate_mask(SPLEEN, AXIS, index) is None
    with pytest.raises(PromptError, match="nothing to accept"):
        session.accept(SPLEEN, AXIS, index)
    session.undo()
    assert session.candidate_mask(SPLEEN, AXIS, index) is not None
    assert not session.labels_kji.any()


@pytest.mark.parametrize("call, message", [
    (lambda s, i: s.add_point(1, AXIS, i, (500, 3)), "outside"),
    (lambda s, i: s.set_box(1, AXIS, i, (10, 10, 10, 40)), "degenerate box"),
    (lambda s, i: s.add_stroke(1, AXIS, i, []), "empty stroke"),
    (lambda s, i: s.add_lasso(1, AXIS, i, [(20, 20), (30, 30), (20, 20)]), "at least 3 distinct points"),
    (lambda s, i: s.add_point(1, AXIS, i, (20, 20), positive=False), "negative prompt needs a result"),
    (lambda s, i: s.add_point(1, AXIS, 9999, (20, 20)), "outside 0.."),
    (lambda s, i: s.add_point(1, "oblique", i, (20, 20)), "unknown axis"),
    (lambda s, i: s.add_point(0, AXIS, i, (20, 20)), "not a usable label value"),
])
def test_bad_prompts_are_clear_errors_and_change_nothing(engine_ct3mm, organs, call, message):
    index = organs[0]
    errors = []
    session = AnnotationSession(engine_ct3mm, hooks=SessionHooks(error=errors.append))
    with pytest.raises(PromptError, match=message):
        call(session, index)
    assert len(errors) == 1 and isinstance(errors[0], PromptError)
    assert not session.can_undo and session.candidate_mask(1, AXIS, index) is None


def test_bad_session_arguments(engine_ct3mm, tmp_path):
    with pytest.raises(InputError, match="overwrite policy"):
        AnnotationSession(engine_ct3mm, overwrite="merge")
    with pytest.raises(InputError, match="does not match the volume"):
        AnnotationSession(engine_ct3mm, labels_kji=np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(InputError, match="does not exist"):
        AnnotationSession(engine_ct3mm, log_path=tmp_path / "missing" / "log.jsonl")


def test_hooks_and_interaction_log(ct3mm, model, worker, memory_only_cache, organs, tmp_path):
    """A fresh memory-only cache: the first prompt has to encode its slice, and says so."""
    index, spleen, _ = organs
    engine = make_engine(ct3mm, EngineOptions(disk_cache=False), model=model, cache=memory_only_cache, worker=worker)
    events = []
    hooks = SessionHooks(mask_changed=lambda *a: events.append(("mask", *a)),
                         labels_changed=lambda *a: events.append(("labels", *a)),
                         encoding_started=lambda *a: events.append(("encoding", *a)),
                         encoding_finished=lambda axis, i, seconds: events.append(("encoded", axis, i, seconds > 0)))
    log = tmp_path / "interactions.jsonl"
    session = AnnotationSession(engine, log_path=log, hooks=hooks)
    session.add_point(SPLEEN, AXIS, index, interior_point(spleen))
    session.add_point(SPLEEN, AXIS, index, interior_point(spleen), positive=True)
    session.accept(SPLEEN, AXIS, index)
    session.undo()
    assert engine.stats.slices_encoded == 1
    assert events == [("encoding", AXIS, index), ("encoded", AXIS, index, True), ("mask", SPLEEN, AXIS, index),
                      ("mask", SPLEEN, AXIS, index), ("mask", SPLEEN, AXIS, index), ("labels", AXIS, index),
                      ("mask", SPLEEN, AXIS, index), ("labels", AXIS, index)]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["action"] for r in records] == ["point", "point", "accept", "undo"]
    first = records[0]
    assert first["prompt"]["type"] == "point" and first["prompt"]["positive"] is True
    assert (first["segment"], first["axis"], first["index"]) == (SPLEEN, AXIS, index)
    assert first["latency_ms"] > records[1]["latency_ms"]  # the first one waited for the encoder
    assert first["decodes"] >= 1 and 0 < first["iou"] <= 1.05 and records[2]["changed"] > 0


def test_worker_thread_and_reader_thread(session, engine_ct3mm, organs):
    """Prompts run on the engine's worker thread while this thread keeps reading."""
    index, spleen, kidney = organs
    reads, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            mask = session.candidate_mask(KIDNEY, AXIS, index)
            reads.append(None if mask is None else int(mask.sum()))
            session.labels_kji.sum()

    def work():
        session.add_point(SPLEEN, AXIS, index, interior_point(spleen))
        session.add_stroke(KIDNEY, AXIS, index, medial_path(kidney))
        session.accept(SPLEEN, AXIS, index)
        session.undo()
        session.redo()
        return session.candidate_mask(KIDNEY, AXIS, index)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        kidney_mask = engine_ct3mm.worker.submit(work).result(timeout=120)
    finally:
        stop.set()
        reader.join()
    assert reads and set(reads) <= {None, int(kidney_mask.sum())}
    assert (engine_ct3mm.volume.axes(AXIS).take(session.labels_kji, index) == SPLEEN).any()


# --- GUI mapping ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def oblique_mr(data_dir):
    return read_volume(data_dir / "mr_brain_mprage_dicom")


def _voxel_normal_ras(volume, axis):
    axes = volume.axes(axis)
    return volume.ijk_to_ras[:3, axes.normal_ijk]


@pytest.mark.parametrize("axis", AXES)
def test_view_mapping_round_trip_on_oblique_dicom(oblique_mr, axis):
    volume = oblique_mr
    index = volume.axes(axis).n_slices // 2 + 3
    slice_rc = np.array([[0.0, 0.0], [10.25, 77.5], [100.0, 3.0]])
    points_ras = slice_rc_to_ras(volume, axis, index, slice_rc)
    view = slice_for_view(volume, _voxel_normal_ras(volume, axis), points_ras[1])
    assert view.ok and (view.axis, view.index) == (axis, index)
    assert np.allclose(ras_to_slice_rc(volume, axis, index, points_ras), slice_rc, atol=1e-6)
    # The scanner's plain anatomical plane is rotated against this oblique volume.
    plain_normal = {"axial": (0, 0, 1), "coronal": (0, 1, 0), "sagittal": (1, 0, 0)}[axis]
    rotated = slice_for_view(volume, plain_normal, points_ras[1])
    assert not rotated.ok and "rotated" in rotated.reason
    off = points_ras[1] + 0.9 * _voxel_normal_ras(volume, axis)
    with pytest.raises(PromptError, match="off"):
        ras_to_slice_rc(volume, axis, index, off)


def _write_flipped(path, array_kji, lps_flip: bool):
    """The same patient-space image stored two ways: plain RAS-ordered voxels, or with i and j reversed."""
    data = array_kji[:, ::-1, ::-1] if lps_flip else array_kji
    image = sitk.GetImageFromArray(np.ascontiguousarray(data))
    spacing = (0.7, 0.8, 2.0)
    image.SetSpacing(spacing)
    shape_i, shape_j = array_kji.shape[2], array_kji.shape[1]
    if lps_flip:  # LPS direction: i runs to patient left, j to posterior
        image.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
        image.SetOrigin((-(shape_i - 1) * spacing[0] + 5, -(shape_j - 1) * spacing[1] - 7, 11))
    else:         # RAS-aligned storage
        image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
        image.SetOrigin((5, -7, 11))
    sitk.WriteImage(image, str(path))


def test_view_mapping_on_lps_and_ras_flipped_nifti(tmp_path):
    rng = np.random.default_rng(3)
    array = rng.integers(0, 1000, size=(6, 9, 11)).astype(np.int16)
    _write_flipped(tmp_path / "ras.nii.gz", array, lps_flip=False)
    _write_flipped(tmp_path / "lps.nii.gz", array, lps_flip=True)
    ras_volume, lps_volume = read_volume(tmp_path / "ras.nii.gz"), read_volume(tmp_path / "lps.nii.gz")
    assert not np.allclose(ras_volume.ijk_to_ras, lps_volume.ijk_to_ras)
    for axis in AXES:
        for volume in (ras_volume, lps_volume):
            index = volume.axes(axis).n_slices // 2
            points_ras = slice_rc_to_ras(volume, axis, index, [[1.0, 2.0], [4.5, 0.0]])
            normal = {"axial": (0, 0, 1), "coronal": (0, -1, 0), "sagittal": (-1, 0, 0)}[axis]
            view = slice_for_view(volume, normal, points_ras[0])
            assert (view.axis, view.index) == (axis, index)
            assert np.allclose(ras_to_slice_rc(volume, axis, index, points_ras), [[1.0, 2.0], [4.5, 0.0]])
        # The same RAS click shows the same voxel value whichever way the file stores it.
        click_ras = slice_rc_to_ras(ras_volume, axis, 2, [[3.0, 4.0]])
        values = []
        for volume in (ras_volume, lps_volume):
            view = slice_for_view(volume, _voxel_normal_ras(volume, axis), click_ras[0])
            rc = np.rint(ras_to_slice_rc(volume, view.axis, view.index, click_ras)[0]).astype(int)
            values.append(volume.axes(view.axis).take(volume.voxels_kji, view.index)[rc[0], rc[1]])
        assert values[0] == values[1]
