"""SAM^assist on the real LiteMedSAM and real CT: learning touches only the prompt tables, switching
an adapter off restores the stock model bit for bit, adapter files round-trip and damaged ones are
refused, and a learned adapter lifts one-click Dice on slices it never saw."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from SAMSegSlicerLib import assist
from SAMSegSlicerLib.assist import (
    AnnotatedSlice,
    LearnOptions,
    PromptAdapter,
    adapter_applied,
    learn_prompts,
    load_adapter,
    save_adapter,
    set_prompt_adapter,
    training_slices,
)
from SAMSegSlicerLib.cli import main
from SAMSegSlicerLib.engine import ModelPrompt
from SAMSegSlicerLib.errors import Cancelled, InputError, ModelError
from SAMSegSlicerLib.evaluation import EvalOptions
from SAMSegSlicerLib.evaluation.masks import dice
from SAMSegSlicerLib.evaluation.simulated_user import clicks_protocol
from SAMSegSlicerLib.worker import CancelToken

KIDNEY_LEFT = 3
FEW_STEPS = LearnOptions(steps=4)


def _state(module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _kidney_slices(engine, labels_kji, count=2) -> list[AnnotatedSlice]:
    truth = engine.volume.axes("axial").stack(labels_kji == KIDNEY_LEFT)
    return [AnnotatedSlice("axial", i, np.array(truth[i])) for i in training_slices(truth, count)]


@pytest.fixture(scope="module")
def kidney_adapter(engine_ct3mm, ct3mm_labels) -> PromptAdapter:
    return learn_prompts(engine_ct3mm, _kidney_slices(engine_ct3mm, ct3mm_labels), options=FEW_STEPS)


def _decode_all(engine, index: int) -> list[np.ndarray]:
    """Low-res logits of a click, a box, box + click and a click with a previous mask."""
    prompts = [ModelPrompt(points_rc=np.array([[50.0, 80.0]]), point_labels=np.array([1])),
               ModelPrompt(box_rc=np.array([35.0, 65.0, 65.0, 95.0])),
               ModelPrompt(points_rc=np.array([[50.0, 80.0], [30.0, 60.0]]), point_labels=np.array([1, 0]),
                           box_rc=np.array([35.0, 65.0, 65.0, 95.0]))]
    logits = [engine.predict("axial", index, p).low_res_logits for p in prompts]
    with_mask = ModelPrompt(points_rc=np.array([[50.0, 80.0]]), point_labels=np.array([1]), mask_logits=logits[1])
    return logits + [engine.predict("axial", index, with_mask).low_res_logits]


def test_training_prompts_match_the_stock_prompt_encoder(model):
    """The trainable re-implementation of the sparse embedding equals the stock one (points, box, both)."""
    trainer = assist._Trainer(model)
    info = model.resize_info((101, 122))
    mask = np.zeros((101, 122), bool)
    mask[30:60, 40:80] = True
    data = assist._prepare(mask, 0, info, (212, 256), (3.0, 3.0))
    rng = np.random.default_rng(1)
    for kind in assist.PROMPT_KINDS:
        prompt = assist._sample_prompt(data, kind, 2, 1, LearnOptions(click_box_fraction=0.5), rng, (20.0, 30.0))
        coords, rows = assist._batch(data, [prompt], model.device)
        (points_rc, labels), box_rc = prompt
        with torch.no_grad():
            points = None if not len(points_rc) else (torch.tensor(info.rc_to_xy(points_rc))[None],
                                                       torch.tensor(labels)[None])
            boxes = None if box_rc is None else torch.tensor(info.box_rc_to_xyxy(box_rc))
            stock, _ = model.prompt_encoder(points=points, boxes=boxes, masks=None)
            mine = trainer.sparse(coords, rows)
        assert mine.shape == stock.shape
        assert torch.allclose(mine, stock, atol=1e-5), kind


def test_learning_changes_only_the_prompt_tables_and_never_the_model(engine_ct3mm, ct3mm_labels, model):
    before = {part: _state(getattr(model, part)) for part in ("image_encoder", "prompt_encoder", "mask_decoder")}
    stock_table = assist.stock_table(model.prompt_encoder)
    steps = []
    adapter = learn_prompts(engine_ct3mm, _kidney_slices(engine_ct3mm, ct3mm_labels), options=FEW_STEPS,
                            progress=lambda done, total: steps.append((done, total)))
    for part, state in before.items():
        assert _same(state, _state(getattr(model, part))), f"learning changed the {part}"
    assert model.prompt_adapter is None
    assert steps == [(n, 4) for n in range(1, 5)]
    assert adapter.prompt_kinds == ("box+points",) and adapter.table.shape == (7, 256)
    changed = set(np.flatnonzero(np.abs(adapter.table - stock_table).max(axis=1) > 0))
    assert changed == {assist.NEGATIVE, assist.POSITIVE, assist.CORNER_TOP_LEFT_WITH_POINTS,
                       assist.CORNER_BOTTOM_RIGHT_WITH_POINTS}
    for row in (assist.CORNER_TOP_LEFT, assist.CORNER_BOTTOM_RIGHT, assist.NOT_A_POINT):
        assert np.array_equal(adapter.table[row], stock_table[row])
    again = learn_prompts(engine_ct3mm, _kidney_slices(engine_ct3mm, ct3mm_labels), options=FEW_STEPS)
    assert np.array_equal(again.table, adapter.table), "same seed, different result"
    other = learn_prompts(engine_ct3mm, _kidney_slices(engine_ct3mm, ct3mm_labels),
                          options=LearnOptions(steps=4, seed=1))
    assert not np.array_equal(other.table, adapter.table)


def test_switching_the_adapter_off_restores_the_stock_model_bit_for_bit(engine_ct3mm, model, kidney_adapter):
    index = 88
    stock_state = _state(model.prompt_encoder)
    stock = _decode_all(engine_ct3mm, index)
    with adapter_applied(engine_ct3mm, kidney_adapter):
        assert model.prompt_adapter is kidney_adapter
        adapted = _decode_all(engine_ct3mm, index)
    assert model.prompt_adapter is None
    # a box+points adapter changes clicks with boxes and leaves boxes alone exactly as they were
    assert np.array_equal(adapted[1], stock[1])
    assert not np.array_equal(adapted[2], stock[2])
    assert _same(stock_state, _state(model.prompt_encoder))
    for before, after in zip(stock, _decode_all(engine_ct3mm, index), strict=True):
        assert np.array_equal(before, after)


def test_every_row_of_an_adapter_reaches_its_prompt_tokens(engine_ct3mm, model):
    """An adapter whose table moves every row changes every kind of prompt, and the decode through
    the model equals the trainer's decode from the same table (what learning optimises is what runs)."""
    table = assist.stock_table(model.prompt_encoder) + \
        np.random.default_rng(0).normal(0, 0.3, (7, 256)).astype(np.float32)
    adapter = PromptAdapter(assist.model_weights_id(model), table, assist.PROMPT_KINDS)
    stock = _decode_all(engine_ct3mm, 88)
    with adapter_applied(engine_ct3mm, adapter):
        adapted = _decode_all(engine_ct3mm, 88)
    assert all(not np.array_equal(a, b) for a, b in zip(adapted, stock, strict=True))
    trainer = assist._Trainer(model)
    with torch.no_grad():
        trainer.table.copy_(torch.from_numpy(table))
        context = trainer.context(engine_ct3mm.embedding("axial", 88))
        info = model.resize_info(engine_ct3mm.slice_shape("axial"))
        data = assist._prepare(np.ones(engine_ct3mm.slice_shape("axial"), bool), 88, info, (212, 256), (3.0, 3.0))
        prompt = ((np.array([[50.0, 80.0], [30.0, 60.0]], np.float32), np.array([1, 0])),
                  np.array([35.0, 65.0, 65.0, 95.0], np.float32))
        mine = trainer.decode(context, trainer.sparse(*assist._batch(data, [prompt], model.device)))[0].numpy()
    # Inference upscales masks only around the prompt, with the bfloat16 decoder where the CPU has it.
    region = model.token_region(info.box_rc_to_xyxy(prompt[1]), info.rc_to_xy(prompt[0][0]))
    row0, row1, col0, col1 = (v * model.low_res_size[0] // model.embedding_size[0] for v in region)
    mine, theirs = mine[row0:row1, col0:col1], adapted[2][row0:row1, col0:col1]
    assert np.abs(mine - theirs).max() < (1e-3 if model.decoder is model.mask_decoder else 0.75)
    assert ((mine > 0) == (theirs > 0)).mean() > 0.995


def test_an_assisted_first_click_proposes_structure_sized_boxes(engine_ct3mm, ct3mm_labels, kidney_adapter):
    from SAMSegSlicerLib.evaluation.simulated_user import interior_point
    from SAMSegSlicerLib.prompts import DEFAULT_POLICY
    from SAMSegSlicerLib.session import AnnotationSession

    truth = engine_ct3mm.volume.axes("axial").stack(ct3mm_labels == KIDNEY_LEFT)
    rows, cols = np.flatnonzero(truth[88].any(axis=1)), np.flatnonzero(truth[88].any(axis=0))
    spacing_rc = engine_ct3mm.volume.axes("axial").spacing_rc(engine_ct3mm.volume.spacing_ijk)
    expected = ((rows[-1] - rows[0] + 1) * spacing_rc[0] / 2, (cols[-1] - cols[0] + 1) * spacing_rc[1] / 2)
    assert kidney_adapter.box_half_mm[0] == pytest.approx(expected[0], rel=0.3)
    assert kidney_adapter.box_half_mm[1] == pytest.approx(expected[1], rel=0.3)
    session = AnnotationSession(engine_ct3mm)
    with adapter_applied(engine_ct3mm, kidney_adapter):
        session.add_point(1, "axial", 80, interior_point(truth[80]), True)
    candidate = session.candidate(1, "axial", 80)
    assert candidate.decodes == len(DEFAULT_POLICY.assist_click_scales)
    mask_rows, mask_cols = np.flatnonzero(candidate.mask_rc.any(axis=1)), np.flatnonzero(candidate.mask_rc.any(axis=0))
    assert candidate.box_rc == (mask_rows[0], mask_cols[0], mask_rows[-1], mask_cols[-1])
    assert dice(candidate.mask_rc, truth[80]) > 0.8


def test_an_adapter_for_another_model_is_refused(model, kidney_adapter):
    foreign = PromptAdapter("vit_b@0123456789abcdef", kidney_adapter.table, ("points",))
    with pytest.raises(ModelError, match="learned with vit_b"):
        set_prompt_adapter(model, foreign)
    assert model.prompt_adapter is None


def test_adapter_file_round_trips(tmp_path, kidney_adapter):
    path = save_adapter(kidney_adapter, tmp_path / "kidney.safetensors")
    loaded = load_adapter(path)
    assert np.array_equal(loaded.table, kidney_adapter.table) and loaded.table.dtype == np.float32
    assert (loaded.model_weights, loaded.prompt_kinds, loaded.info, loaded.box_half_mm) == \
        (kidney_adapter.model_weights, kidney_adapter.prompt_kinds, kidney_adapter.info, kidney_adapter.box_half_mm)
    assert loaded.checksum == kidney_adapter.checksum
    assert path.stat().st_size < 16_000
    renamed = PromptAdapter(kidney_adapter.model_weights, kidney_adapter.table, ("points",), kidney_adapter.info)
    assert renamed.checksum != kidney_adapter.checksum  # the checksum covers the header facts too
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".tmp*"))


def test_a_damaged_adapter_file_is_refused_with_a_clear_error(tmp_path, kidney_adapter):
    data = save_adapter(kidney_adapter, tmp_path / "good.safetensors").read_bytes()
    flipped = bytearray(data)
    flipped[-10] ^= 0x01  # one bit of the table
    cases = [("checksum", bytes(flipped)), ("not readable", data[:len(data) // 2]), ("not readable", b"hello" * 20)]
    for expected, content in cases:
        path = tmp_path / "bad.safetensors"
        path.write_bytes(content)
        with pytest.raises(ModelError, match=expected) as error:
            load_adapter(path)
        assert str(path) in str(error.value) and "learn it again" in str(error.value)
    with pytest.raises(InputError, match="cannot be read"):
        load_adapter(tmp_path / "missing.safetensors")


def test_learning_is_cancellable_and_checks_its_input(engine_ct3mm, ct3mm_labels):
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        learn_prompts(engine_ct3mm, _kidney_slices(engine_ct3mm, ct3mm_labels), options=FEW_STEPS, cancel=cancel)
    empty = AnnotatedSlice("axial", 10, np.zeros((101, 122), bool))
    with pytest.raises(InputError, match="holds no annotation"):
        learn_prompts(engine_ct3mm, [empty])
    with pytest.raises(InputError, match="unknown prompt kind"):
        learn_prompts(engine_ct3mm, _kidney_slices(engine_ct3mm, ct3mm_labels), ["lasso"])
    with pytest.raises(InputError, match="mask is"):
        learn_prompts(engine_ct3mm, [AnnotatedSlice("axial", 88, np.ones((5, 5), bool))])


def test_three_slices_hold_one_back_for_early_stopping(engine_ct3mm, ct3mm_labels):
    slices = _kidney_slices(engine_ct3mm, ct3mm_labels, count=3)
    adapter = learn_prompts(engine_ct3mm, slices, options=LearnOptions(steps=6, validate_every=2, patience=1))
    assert adapter.info["held_back"] == [slices[-1].index]
    assert adapter.info["slices"] == [s.index for s in slices[:-1]]
    assert 2 <= adapter.info["best_step"] <= adapter.info["steps"] <= 6
    assert adapter.info["held_back_loss"] is not None


def test_training_slices_lie_around_the_median_slice():
    stack = np.zeros((20, 4, 4), bool)
    stack[5:14, 1, 1] = True  # slices 5..13, median 9
    assert training_slices(stack, 1) == [9]
    assert training_slices(stack, 2) == [8, 9]
    assert training_slices(stack, 5) == [7, 8, 9, 10, 11]
    assert training_slices(stack, 50) == list(range(5, 14))


def test_learning_lifts_one_click_dice_on_slices_it_never_saw(engine_ct3mm, ct3mm_labels):
    """The liver on a 13-slice stretch around its median slice: learn from 2 slices (40 steps), then the
    clicks user (one click per slice, through the session) on the 11 others, stock versus adapted."""
    liver_kji = ct3mm_labels == 5
    axes = engine_ct3mm.volume.axes("axial")
    truth = axes.stack(liver_kji)
    learned = training_slices(truth, 2)
    stretch = range(learned[0] - 5, learned[-1] + 6)
    truth_kji = np.zeros_like(liver_kji)
    for index in stretch:
        axes.stack(truth_kji)[index] = truth[index]
    others = np.zeros_like(liver_kji)
    for index in stretch:
        axes.stack(others)[index] = index not in learned
    adapter = learn_prompts(engine_ct3mm, [AnnotatedSlice("axial", i, np.array(truth[i])) for i in learned],
                            options=LearnOptions(steps=40))
    options = EvalOptions(clicks=1)
    stock = clicks_protocol(engine_ct3mm, truth_kji, options).prediction_kji
    with adapter_applied(engine_ct3mm, adapter):
        adapted = clicks_protocol(engine_ct3mm, truth_kji, options).prediction_kji
    stock_dice, adapted_dice = dice(stock[others], truth_kji[others]), dice(adapted[others], truth_kji[others])
    assert adapted_dice > stock_dice + 0.05, (stock_dice, adapted_dice)
    assert adapted_dice > 0.8, adapted_dice


def test_cli_learns_writes_and_describes_an_adapter(capsys, tmp_path, data_dir):
    out = tmp_path / "kidney.safetensors"
    case = data_dir / "ct_abdomen_3mm"
    code = main(["assist", "learn", str(case / "image.nii.gz"), str(case / "labels.nii.gz"), "--labels", "3",
                 "--slices", "2", "--steps", "2", "--out", str(out)])
    _, err = capsys.readouterr()
    assert code == 0 and out.is_file(), err
    assert main(["assist", "info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["prompt_kinds"] == ["box+points"] and info["slices"] == [87, 88] and info["steps"] == 2
    out.write_bytes(out.read_bytes()[:-4] + b"\0\0\0\0")
    assert main(["assist", "info", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("samseg: error:") == 1 and "checksum" in err and "Traceback" not in err
    code = main(["assist", "learn", str(case / "image.nii.gz"), str(case / "labels.nii.gz"), "--labels", "3",
                 "--indices", "20", "--out", str(tmp_path / "x.safetensors")])
    assert code == 2 and "not on axial slice(s) 20" in capsys.readouterr().err
