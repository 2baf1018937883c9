"""The slice engine on real data: masks from prompts, decoding without re-encoding, prefetch and cancel."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from SAMSegSlicerLib.engine import ModelPrompt, SliceEngine, nearest_first
from SAMSegSlicerLib.errors import Cancelled, PromptError
from SAMSegSlicerLib.evaluation.masks import dice, largest_slice
from SAMSegSlicerLib.geometry import bbox_rc
from SAMSegSlicerLib.models import fast_decoder
from SAMSegSlicerLib.worker import CancelToken


@pytest.fixture(scope="module")
def liver(engine_ct3mm, ct3mm_labels):
    stack = engine_ct3mm.volume.axes("axial").stack(ct3mm_labels == 5)
    index = largest_slice(stack)
    return index, stack[index]


def test_box_gives_the_organ(engine_ct3mm, liver):
    index, truth = liver
    prediction = engine_ct3mm.predict("axial", index, ModelPrompt(box_rc=bbox_rc(truth)))
    assert prediction.mask_rc.shape == truth.shape
    assert dice(prediction.mask_rc, truth) > 0.93
    assert 0.8 < prediction.iou <= 1.05
    assert prediction.low_res_logits.shape == engine_ct3mm.model.low_res_size


def test_decoding_never_reencodes(engine_ct3mm, liver):
    index, truth = liver
    engine_ct3mm.encode("axial", [index])
    before = engine_ct3mm.stats.slices_encoded
    box = bbox_rc(truth)
    first = engine_ct3mm.predict("axial", index, ModelPrompt(box_rc=box))
    for shift in range(5):
        engine_ct3mm.predict("axial", index, ModelPrompt(
            points_rc=np.array([[box[0] + 10 + shift, box[1] + 10]]), point_labels=np.array([1]),
            box_rc=box, mask_logits=first.low_res_logits))
    assert engine_ct3mm.stats.slices_encoded == before


def test_candidate_boxes_decode_like_single_boxes(engine_ct3mm, liver):
    index, truth = liver
    box = bbox_rc(truth)
    half = (box[2:] - box[:2]) / 2
    boxes = np.stack([box, box + [3, 3, -3, -3], box + [-4, -4, 4, 4], box + np.r_[half, -half] * 0.6])
    together = engine_ct3mm.predict_many("axial", index, ModelPrompt(), boxes)
    for candidate, box_rc in zip(together, boxes):
        alone = engine_ct3mm.predict("axial", index, ModelPrompt(box_rc=box_rc))
        # Each box's mask is upscaled in its own token region, in a batch as alone.
        assert np.allclose(candidate.low_res_logits, alone.low_res_logits, atol=1e-3)
        assert np.array_equal(candidate.mask_rc, alone.mask_rc)
        assert candidate.iou == pytest.approx(alone.iou, abs=1e-4)


@pytest.mark.parametrize("with_mask, multimask, n_points", [(False, False, 1), (True, False, 1), (False, True, 1),
                                                            (False, False, 12), (True, False, 12)])
def test_fast_decoder_equals_stock_decoder(engine_ct3mm, liver, with_mask, multimask, n_points):
    """Also with more prompt tokens than the attention's head channels (12 points: 19 tokens),
    where image-to-token attention projects its output after the weighted sum."""
    index, truth = liver
    model = engine_ct3mm.model
    embedding = torch.from_numpy(engine_ct3mm.embedding("axial", index).astype(np.float32))[None]
    info = model.resize_info(truth.shape)

    @torch.inference_mode()
    def decode_both():
        boxes = torch.as_tensor(info.box_rc_to_xyxy(bbox_rc(truth)))
        points_rc = [[40 + 7 * n, 30 + 5 * n] for n in range(n_points)]
        points = (torch.as_tensor(info.rc_to_xy(points_rc))[None], torch.tensor([[1, 0] * (n_points // 2) or [1]]))
        masks = torch.randn(1, 1, *model.low_res_size) if with_mask else None
        sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=masks)
        context = fast_decoder.image_context(model.mask_decoder, model.prompt_encoder, model.dense_pe, embedding)
        return (*model.mask_decoder(embedding, model.dense_pe, sparse, dense, multimask),
                *fast_decoder.decode(model.mask_decoder, context, sparse, dense if with_mask else None, multimask))

    stock_masks, stock_iou, fast_masks, fast_iou = engine_ct3mm.worker.run(decode_both)
    assert torch.allclose(fast_masks, stock_masks, atol=2e-3)
    assert torch.allclose(fast_iou, stock_iou, atol=1e-4)


def test_region_decode_equals_full_decode_inside_and_is_lower_outside(engine_ct3mm, liver):
    index, truth = liver
    model = engine_ct3mm.model
    info = model.resize_info(truth.shape)
    context = model.image_context(engine_ct3mm.embedding("axial", index))
    box_xyxy = info.box_rc_to_xyxy(bbox_rc(truth))
    region = model.token_region(box_xyxy, None)

    @torch.inference_mode()
    def decode_both():
        sparse, _ = model.prompt_encoder(points=None, boxes=torch.as_tensor(box_xyxy), masks=None)
        return (*fast_decoder.decode(model.decoder, context, sparse),
                *fast_decoder.decode(model.decoder, context, sparse, regions=[region]))

    full, full_iou, cropped, cropped_iou = engine_ct3mm.worker.run(decode_both)
    row0, row1, col0, col1 = (v * model.low_res_size[0] // model.embedding_size[0] for v in region)
    assert (row1 - row0) * (col1 - col0) < 0.5 * full[0, 0].numel()
    assert torch.equal(cropped[..., row0:row1, col0:col1], full[..., row0:row1, col0:col1])
    outside = torch.ones_like(full, dtype=torch.bool)
    outside[..., row0:row1, col0:col1] = False
    assert (cropped[outside] <= cropped[~outside].min()).all()
    assert not (full[outside] > 0).any()  # the stock mask has nothing there either
    assert torch.equal(cropped_iou, full_iou)


def test_bf16_decoder_gives_the_float32_mask(engine_ct3mm, liver):
    index, truth = liver
    model = engine_ct3mm.model
    if model.decoder is model.mask_decoder:
        pytest.skip("this CPU has no native bfloat16: the decoder runs in float32")
    assert model.decoder.iou_token.weight.dtype == torch.bfloat16
    assert model.mask_decoder.iou_token.weight.dtype == torch.float32
    info = model.resize_info(truth.shape)
    embedding = engine_ct3mm.embedding("axial", index)
    box_xyxy = info.box_rc_to_xyxy(bbox_rc(truth))

    @torch.inference_mode()
    def mask(decoder):
        sparse, _ = model.prompt_encoder(points=None, boxes=torch.as_tensor(box_xyxy), masks=None)
        context = fast_decoder.image_context(decoder, model.prompt_encoder, model.dense_pe,
                                             torch.from_numpy(embedding.astype(np.float32))[None])
        return fast_decoder.decode(decoder, context, sparse)[0][0, 0] > 0

    low, high = (engine_ct3mm.worker.run(lambda decoder=decoder: mask(decoder))
                 for decoder in (model.decoder, model.mask_decoder))
    assert high.sum() > 500
    assert 2 * (low & high).sum() / (low.sum() + high.sum()) > 0.995


def test_models_load_and_engines_run_on_the_one_shared_torch_thread(monkeypatch, engine_ct3mm):
    from SAMSegSlicerLib import factory
    from SAMSegSlicerLib.worker import shared_worker

    threads = []
    monkeypatch.setattr(factory, "load_model", lambda *args, **kwargs: threads.append(threading.current_thread()))
    factory.open_model(factory.EngineOptions())
    assert threads == [shared_worker().run(threading.current_thread)]
    assert shared_worker() is shared_worker()
    assert engine_ct3mm.worker is shared_worker()
    assert SliceEngine(engine_ct3mm.model, engine_ct3mm.volume, engine_ct3mm.window).worker is shared_worker()


def test_the_shared_torch_thread_restarts_after_a_shutdown(monkeypatch):
    from SAMSegSlicerLib import worker as worker_module

    monkeypatch.setattr(worker_module, "_shared", None)  # the session's worker stays untouched
    first = worker_module.shared_worker()
    assert worker_module.shared_worker() is first
    assert first.run(threading.current_thread) is not threading.current_thread()
    first.shutdown()
    assert not first.alive
    second = worker_module.shared_worker()
    assert second is not first and second.alive
    assert second.run(lambda: 6 * 7) == 42
    second.shutdown()


EXIT_WHILE_BUSY = """
import time, torch
from SAMSegSlicerLib.worker import BACKGROUND, shared_worker
a = torch.randn(3000, 3000)
shared_worker().submit(lambda: [a @ a for _ in range(20)], BACKGROUND)
time.sleep(0.3)
print("main thread done")
"""


def test_a_process_that_ends_while_the_torch_thread_is_busy_exits_cleanly():
    # Without the atexit stop, Python ends the busy daemon thread inside a torch call and the
    # process aborts: "terminate called without an active exception", exit 134.
    done = subprocess.run([sys.executable, "-c", EXIT_WHILE_BUSY], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "main thread done"), done.stderr
    assert "terminate called" not in done.stderr


@pytest.mark.parametrize("prompt, message", [
    (ModelPrompt(), "no prompt"),
    (ModelPrompt(points_rc=np.array([[500.0, 3.0]]), point_labels=np.array([1])), "outside"),
    (ModelPrompt(box_rc=np.array([30.0, 30.0, 10.0, 50.0])), "inverted box"),
    (ModelPrompt(box_rc=np.array([200.0, 200.0, 300.0, 300.0])), "outside"),
    (ModelPrompt(points_rc=np.array([[5.0, 5.0]])), "label"),
])
def test_bad_prompts_are_clear_errors(engine_ct3mm, prompt, message):
    with pytest.raises(PromptError, match=message):
        engine_ct3mm.predict("axial", 50, prompt)


def test_slice_outside_the_volume(engine_ct3mm):
    with pytest.raises(IndexError, match="outside"):
        engine_ct3mm.predict("axial", 500, ModelPrompt(box_rc=np.array([1.0, 1.0, 5.0, 5.0])))


def test_nearest_first_order():
    assert nearest_first(5, 9) == [5, 4, 6, 3, 7, 2, 8, 1, 0]
    assert nearest_first(0, 4, radius=2) == [0, 1, 2]


def test_prefetch_is_cancellable_and_consistent(ct3mm, model, worker, memory_only_cache):
    from SAMSegSlicerLib.window import resolve_window

    engine = SliceEngine(model, ct3mm, resolve_window("auto", ct3mm.voxels_kji), memory_only_cache, worker)
    cancel = CancelToken()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done >= 2:
            cancel.cancel()

    future = engine.prefetch("coronal", nearest_first(50, engine.n_slices("coronal"), radius=10), cancel, progress)
    with pytest.raises(Cancelled):
        future.result(timeout=300)
    encoded = [i for i in range(engine.n_slices("coronal")) if engine.is_encoded("coronal", i)]
    assert 2 <= len(encoded) <= 4 and set(encoded) <= set(range(48, 53))
    assert engine.stats.slices_encoded == len(encoded)
    time.sleep(0.1)
    assert engine.stats.slices_encoded == len(encoded)
