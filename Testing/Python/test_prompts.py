"""Prompt types, their validation, and how clicks, strokes and lassos reach point-capable and box-only models."""

from __future__ import annotations

import numpy as np
import pytest

from SAMSegSlicerLib.engine import ModelPrompt
from SAMSegSlicerLib.errors import PromptError
from SAMSegSlicerLib.evaluation.masks import dice
from SAMSegSlicerLib.evaluation.simulated_user import interior_point, lasso_outline, medial_path
from SAMSegSlicerLib.geometry import bbox_rc
from SAMSegSlicerLib.prompts import (
    DEFAULT_POLICY,
    Box,
    Lasso,
    Point,
    SlicePrompts,
    agreement,
    decode_slice,
    evidence_of,
    first_boxes,
    grown_boxes,
    lasso_mask,
    lasso_points,
    local_edit,
    make_box,
    make_lasso,
    make_point,
    make_stroke,
    point_model_prompt,
    reach_px,
    sample_stroke,
    shrunk_boxes,
    stroke_pixels,
)

SHAPE = (40, 60)


@pytest.mark.parametrize("make, message", [
    (lambda: make_point((45, 3), True, SHAPE), "outside the 40x60 slice"),
    (lambda: make_point((3, -2), False, SHAPE), "outside"),
    (lambda: make_point((np.nan, 3), True, SHAPE), "two finite numbers"),
    (lambda: make_point((1, 2, 3), True, SHAPE), "two finite numbers"),
    (lambda: make_box((10, 10, 5, 20), SHAPE), "inverted box"),
    (lambda: make_box((10, 10, 10.5, 20), SHAPE), "degenerate box"),
    (lambda: make_box((50, 70, 60, 80), SHAPE), "outside"),
    (lambda: make_box((1, 2, 3), SHAPE), "four finite numbers"),
    (lambda: make_stroke([], True, SHAPE), "empty stroke"),
    (lambda: make_stroke(np.zeros((0, 2)), False, SHAPE), "empty stroke"),
    (lambda: make_stroke([[1, 1], [2, 70]], True, SHAPE), "outside"),
    (lambda: make_stroke([1, 2, 3], True, SHAPE), "(N, 2)"),
    (lambda: make_lasso([], SHAPE), "(N, 2)"),
    (lambda: make_lasso([[1, np.inf], [5, 5], [9, 1]], SHAPE), "(N, 2)"),
    (lambda: make_lasso([[1, 1], [9, 9], [1, 1]], SHAPE), "at least 3 distinct points, got 2"),
    (lambda: make_lasso([[1, 1], [5, 5], [9, 9], [3, 3]], SHAPE), "encloses 0 square pixels"),
    (lambda: make_lasso([[1, 1], [1, 30], [1.5, 20]], SHAPE), "spans 0.5x29 pixels"),
    (lambda: make_lasso([[1, 1], [1, 30], [45, 20]], SHAPE), "lasso point (row 45.0, col 20.0) is outside"),
])
def test_bad_prompts_are_one_clear_error(make, message):
    with pytest.raises(PromptError, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        make()
    assert "\n" not in str(raised.value) and " — " in str(raised.value)


def test_valid_prompts_are_plain_numbers():
    assert make_point(np.array([3, 4]), 1, SHAPE) == Point((3.0, 4.0), True)
    assert make_box((-5, 2, 12, 80), SHAPE) == Box((0.0, 2.0, 12.0, 59.0))  # clipped to the slice
    stroke = make_stroke(np.array([[1, 2], [3, 4]]), False, SHAPE)
    assert stroke.points_rc == ((1.0, 2.0), (3.0, 4.0)) and not stroke.positive
    assert make_stroke([[5, 5]], True, SHAPE).array_rc.shape == (1, 2)  # a dab is a stroke too


def test_a_lasso_is_its_outline_with_the_bounding_box():
    lasso = make_lasso(np.array([[2, 3], [2, 12], [9, 12], [9, 3]]), SHAPE)
    assert lasso == Lasso(((2.0, 3.0), (2.0, 12.0), (9.0, 12.0), (9.0, 3.0)))
    assert lasso.box_rc == (2.0, 3.0, 9.0, 12.0)
    assert lasso.describe() == {"type": "lasso", "outline_rc": [[2, 3], [2, 12], [9, 12], [9, 3]]}
    assert make_lasso([[0, 0], [0, 5], [5, 5], [0, 0]], SHAPE).array_rc.shape == (4, 2)  # closing point is fine


def test_lasso_inside_is_filled_and_its_points_lie_deep_inside():
    square = lasso_mask(np.array([[2, 3], [2, 12], [9, 12], [9, 3]]), SHAPE)
    assert square.sum() == 8 * 10 and square[2:10, 3:13].all()  # pixels on the outline count
    triangle = lasso_mask(np.array([[0, 0], [20, 10], [0, 20]]), SHAPE)
    assert triangle[1, 1:20].all() and triangle[15, 8:13].all() and not triangle[15, 5] and not triangle[15, 15]
    assert lasso_mask(np.array([[30, 50], [30, 70], [50, 70], [50, 50]]), SHAPE).sum() == 10 * 10  # clipped
    u_shape = lasso_mask(np.array([[5, 5], [25, 5], [25, 35], [5, 35], [5, 25], [18, 25], [18, 15], [5, 15]]), SHAPE)
    assert u_shape[20, 5:36].all() and u_shape[10, 5:16].all() and not u_shape[10, 16:25].any()  # the notch is out
    assert u_shape.sum() == 21 * 31 - 13 * 9
    points = lasso_points(np.array([[0, 0], [0, 30], [20, 30], [20, 0]]), 4)
    assert points.shape == (4, 2) and points[0].tolist() == [10.0, 15.0]  # the most interior pixel, central
    assert np.all((points >= 5) & (points <= [15, 25]))  # at least half as deep
    assert np.linalg.norm(points[1] - points[0]) > 10  # spread out
    assert lasso_points(np.array([[0, 0], [0, 2], [2, 2], [2, 0]]), 5).tolist() == [[1, 1], [0, 0], [0, 2], [2, 0],
                                                                                   [2, 2]]


def test_later_box_replaces_earlier_and_order_is_kept():
    prompts = SlicePrompts().add(Box((0, 0, 9, 9))).add(Point((4, 4))).add(Box((1, 1, 5, 5)))
    assert prompts.box == Box((1, 1, 5, 5))
    assert prompts.points == (Point((4, 4)),) and prompts.latest == Box((1, 1, 5, 5))
    lassoed = prompts.add(make_lasso([[2, 2], [2, 8], [7, 5]], SHAPE))
    assert lassoed.box == Box((2.0, 2.0, 7.0, 8.0))  # a later lasso's box replaces the box
    assert lassoed.add(Box((0, 0, 3, 3))).box == Box((0, 0, 3, 3))  # and a later box the lasso's


def test_strokes_are_sampled_evenly_and_rasterised_connected():
    line = np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    samples = sample_stroke(line, 5)
    assert np.allclose(samples[0], line[0]) and np.allclose(samples[-1], line[-1])
    steps = np.abs(np.diff(samples, axis=0)).sum(axis=1)
    assert np.allclose(steps, 5.0)
    pixels = stroke_pixels(line, (20, 20))
    assert len(pixels) == 21 and (pixels[0] == (0, 0)).all() and (pixels[-1] == (10, 10)).all()
    assert np.abs(np.diff(pixels, axis=0)).max() == 1  # 8-connected, no gaps
    assert len(sample_stroke(np.array([[3.0, 4.0]]), 8)) == 1


def test_first_click_boxes_are_centred_and_sized_in_millimetres():
    click = Point((20.0, 30.0))
    fine = first_boxes(click, DEFAULT_POLICY, (1.0, 1.0))
    coarse = first_boxes(click, DEFAULT_POLICY, (2.0, 2.0))
    assert len(fine) == len(DEFAULT_POLICY.click_half_sizes_mm)
    assert np.allclose((fine[:, 0] + fine[:, 2]) / 2, 20) and np.allclose((fine[:, 1] + fine[:, 3]) / 2, 30)
    assert np.allclose(fine[:, 2] - fine[:, 0], 2 * np.asarray(DEFAULT_POLICY.click_half_sizes_mm))
    assert np.allclose((coarse[:, 2] - coarse[:, 0]) * 2, fine[:, 2] - fine[:, 0])
    stroke = make_stroke([[10, 10], [12, 30]], True, SHAPE)
    around = first_boxes(stroke, DEFAULT_POLICY, (1.0, 1.0))
    assert np.all(around[:, :2] <= (10, 10)) and np.all(around[:, 2:] >= (12, 30))


def test_corrections_grow_and_shrink_the_box():
    box = (10.0, 10.0, 30.0, 30.0)
    outside = np.array([[20, 40]])
    grown = grown_boxes(box, outside, 3.0, DEFAULT_POLICY)
    assert np.all(grown[:, 3] >= 40 + 3.0) and np.all(grown[:, :3] <= (10, 10, 30) * np.array([1, 1, 0]) + [0, 0, 40])
    near_top = np.array([[13, 20]])
    shrunk = shrunk_boxes(box, near_top, 2.0, DEFAULT_POLICY)
    assert len(shrunk) == 2 * len(DEFAULT_POLICY.shrink_factors)
    excludes = (shrunk[:, 0] > 13) | (shrunk[:, 2] < 13) | (shrunk[:, 1] > 20) | (shrunk[:, 3] < 20)
    assert excludes.all()
    assert np.any(shrunk[:, 0] >= 15)  # the nearest side (top) is pulled in past the click


def test_reach_and_local_edit():
    mask = np.zeros(SHAPE, dtype=bool)
    mask[10:30, 10:30] = True
    click = np.array([[20, 36]])
    assert reach_px(mask, click, True, 20.0) == pytest.approx(7.0)
    assert reach_px(mask, np.array([[20, 59]]), True, 20.0) == pytest.approx(20.0)  # beyond the limit
    grown = local_edit(mask, click, True, 7.0)
    assert grown[20, 30:44].all() and grown[mask].all() and not grown[0:5].any()
    cut = local_edit(mask, np.array([[12, 12]]), False, reach_px(mask, np.array([[12, 12]]), False, 20.0))
    assert not cut[12, 12] and cut[25, 25] and mask.sum() - cut.sum() < 30


def test_agreement_counts_positive_inside_and_negative_outside():
    mask = np.zeros(SHAPE, dtype=bool)
    mask[10:20, 10:20] = True
    prompts = (Point((15, 15)), Point((30, 30), False), make_stroke([[12, 12], [12, 40]], True, SHAPE))
    evidence = evidence_of(prompts, per_stroke=4, per_lasso=3)
    assert len(evidence.positive_rc) == 5 and len(evidence.negative_rc) == 1
    assert agreement(mask, evidence) == pytest.approx(2 / 5 + 1)  # click and stroke start inside, negative out
    lassoed = evidence_of(prompts + (make_lasso([[10, 10], [10, 19], [19, 19], [19, 10]], SHAPE),), 4, 3)
    assert len(lassoed.positive_rc) == 5 + 3  # the lasso's inside is positive evidence
    assert agreement(mask, lassoed) == pytest.approx(5 / 8 + 1)


def test_point_capable_models_get_points_box_and_logits():
    stroke = make_stroke(np.stack([np.full(50, 5.0), np.arange(50.0)], axis=1), False, SHAPE)
    prompts = SlicePrompts().add(Point((3, 4))).add(stroke).add(Box((1, 1, 20, 30)))
    logits = np.zeros((256, 256), dtype=np.float32)
    previous = type("Previous", (), {"low_res_logits": logits})()
    model_prompt = point_model_prompt(prompts, previous, DEFAULT_POLICY)
    assert model_prompt.points_rc.shape == (1 + DEFAULT_POLICY.points_per_stroke, 2)
    assert model_prompt.point_labels.tolist() == [1] + [0] * DEFAULT_POLICY.points_per_stroke
    assert model_prompt.box_rc.tolist() == [1, 1, 20, 30] and np.array_equal(model_prompt.mask_logits, logits)
    lasso = make_lasso([[10, 10], [10, 40], [30, 40], [30, 10]], SHAPE)
    lassoed = point_model_prompt(prompts.add(lasso), None, DEFAULT_POLICY)
    assert lassoed.box_rc.tolist() == [10, 10, 30, 40] and lassoed.mask_logits is None
    assert lassoed.point_labels.tolist()[-DEFAULT_POLICY.points_per_lasso:] == [1] * DEFAULT_POLICY.points_per_lasso
    assert lassoed.points_rc[-DEFAULT_POLICY.points_per_lasso:].tolist()[0] == [20.0, 25.0]


# --- with the real LiteMedSAM (box-only) ----------------------------------------------------

@pytest.fixture(scope="module")
def kidney(engine_ct3mm, ct3mm_labels):
    stack = engine_ct3mm.volume.axes("axial").stack(ct3mm_labels == 2)
    index = int(np.argmax(stack.sum(axis=(1, 2))))
    return index, stack[index]


def test_one_click_is_evidence_for_a_box(engine_ct3mm, kidney):
    """LiteMedSAM never learnt points: a raw point gives next to nothing, boxes around the click work."""
    index, truth = kidney
    click = interior_point(truth)
    raw = engine_ct3mm.predict("axial", index, ModelPrompt(points_rc=click[None], point_labels=np.array([1])))
    candidate = decode_slice(engine_ct3mm, "axial", index, SlicePrompts().add(Point(tuple(click))))
    assert dice(raw.mask_rc, truth) < 0.3
    assert dice(candidate.mask_rc, truth) > 0.8
    assert candidate.decodes == len(DEFAULT_POLICY.click_half_sizes_mm) and candidate.box_rc is not None
    assert not candidate.mask_rc.flags.writeable


def test_stroke_along_the_organ_and_negative_strokes_cut(engine_ct3mm, kidney):
    index, truth = kidney
    stroke = make_stroke(medial_path(truth), True, truth.shape)
    first = decode_slice(engine_ct3mm, "axial", index, SlicePrompts().add(stroke))
    assert dice(first.mask_rc, truth) > 0.85
    rows, cols = np.nonzero(first.mask_rc)
    cut = make_stroke([[rows.min(), cols.mean()], [rows.max(), cols.mean()]], False, truth.shape)
    second = decode_slice(engine_ct3mm, "axial", index, SlicePrompts().add(stroke).add(cut), first)
    pixels = stroke_pixels(cut.array_rc, truth.shape)
    assert not second.mask_rc[pixels[:, 0], pixels[:, 1]].any()


def test_corrective_clicks_change_what_they_point_at(engine_ct3mm, kidney):
    index, truth = kidney
    prompts = SlicePrompts().add(Point(tuple(interior_point(truth))))
    first = decode_slice(engine_ct3mm, "axial", index, prompts)
    rows, cols = np.nonzero(first.mask_rc)
    edge = (float(rows.max()), float(cols[np.argmax(rows)]))  # a mask pixel on its lowest row
    negative = decode_slice(engine_ct3mm, "axial", index, prompts.add(Point(edge, False)), first)
    assert not negative.mask_rc[int(edge[0]), int(edge[1])]
    far = (float(rows.max()) + 6, edge[1])
    positive = decode_slice(engine_ct3mm, "axial", index, prompts.add(Point(far, True)), first)
    assert positive.mask_rc[int(far[0]), int(far[1])]


def test_a_lasso_around_the_kidney_is_its_box_cut_to_its_inside(engine_ct3mm, kidney):
    """One decode of the lasso's bounding box, then nothing outside the lasso: above the oracle box."""
    index, truth = kidney
    outline = lasso_outline(truth, np.random.default_rng(0))
    lasso = make_lasso(outline, truth.shape)
    candidate = decode_slice(engine_ct3mm, "axial", index, SlicePrompts().add(lasso))
    inside = lasso_mask(lasso.array_rc, truth.shape)
    oracle = engine_ct3mm.predict("axial", index, ModelPrompt(box_rc=np.asarray(bbox_rc(truth), dtype=float)))
    assert candidate.decodes == 1 and candidate.box_rc == lasso.box_rc
    assert not (candidate.mask_rc & ~inside).any()
    assert dice(candidate.mask_rc, truth) > 0.93  # measured 0.939 (oracle box 0.920)
    assert dice(candidate.mask_rc, truth) >= dice(oracle.mask_rc, truth) - 0.01


def test_negative_first_is_a_clear_error(engine_ct3mm, kidney):
    index, _ = kidney
    with pytest.raises(PromptError, match="negative prompt needs a result"):
        decode_slice(engine_ct3mm, "axial", index, SlicePrompts().add(Point((20, 20), False)))
