"""The model zoo: registry, checksums, downloads, and the SAM/MedSAM loading path on small random models."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from SAMSegSlicerLib.errors import DownloadError, ModelError
from SAMSegSlicerLib.models import MODEL_SPECS, checkpoint_path, load_model, resolve_spec
from SAMSegSlicerLib.models.device import MALLOC_TUNING_ENV, keep_freed_memory
from SAMSegSlicerLib.models.download import file_digest
from SAMSegSlicerLib.models.sam_model import SamArchitecture, build_sam_from_architecture

TINY_VIT = SamArchitecture(embed_dim=768, depth=1, num_heads=12, patch_size=16, image_size=64, window_size=0,
                           global_attn_indexes=(0,), out_chans=32, mask_in_chans=16, decoder_depth=2,
                           decoder_mlp_dim=64, num_multimask_outputs=3, iou_head_hidden_dim=32)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A randomly initialised SAM ViT (ViT-B width, one block, 64 px) saved the way SAM's files are."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_sam.pth"
    torch.save(build_sam_from_architecture(TINY_VIT).state_dict(), path)
    return path


def test_registry_has_the_zoo():
    assert {"litemedsam", "sam_vit_b", "sam_vit_l", "sam_vit_h", "medsam_vit_b"} <= set(MODEL_SPECS)
    for spec in MODEL_SPECS.values():
        assert spec.checksum and (spec.urls or spec.package_asset)
        assert all(url.startswith("https://") for url in spec.urls)
    assert resolve_spec().name == "litemedsam" and resolve_spec().box_only


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ModelError, match="unknown model 'sam_vit_q'.*samseg models list"):
        resolve_spec("sam_vit_q")


def test_litemedsam_asset_is_verified(model):
    path = checkpoint_path(resolve_spec("litemedsam"))
    assert file_digest(path).startswith("79d8c9dc") and file_digest(path).endswith("ce76")
    assert model.model_id.startswith("litemedsam@79d8c9dca6db4d69/")


@pytest.mark.parametrize("arch", ["vit_b", "medsam_vit_b"])
def test_user_checkpoint_loads_through_the_real_path(tiny_checkpoint, arch):
    spec = resolve_spec(checkpoint=str(tiny_checkpoint), arch=arch)
    model = load_model(spec, device="cpu", precision="fp32")
    assert model.input_size == 64 and model.spec.resize == ("square" if arch == "medsam_vit_b" else "longest_side")
    embedding = model.encode([np.random.default_rng(0).random((40, 50), dtype=np.float32)])
    assert embedding.shape == (1, 32, 4, 4) and embedding.dtype == np.float16
    context = model.image_context(embedding[0])
    info = model.resize_info((40, 50))
    logits, iou = model.decode(context, info.rc_to_xy([[20, 25]]), np.array([1]), info.box_rc_to_xyxy([5, 5, 30, 40]))
    assert tuple(logits.shape) == (1, 1, 16, 16) and tuple(iou.shape) == (1, 1)
    assert model.low_res_to_slice(logits[:, 0], info).shape[-2:] == (40, 50)


def test_downloaded_checkpoint_is_checked_and_loaded(tiny_checkpoint, tmp_path):
    spec = dataclasses.replace(MODEL_SPECS["sam_vit_b"], urls=(tiny_checkpoint.as_uri(),),
                               checksum="sha256:" + file_digest(tiny_checkpoint), checkpoint_file="tiny.pth")
    seen = []
    path = checkpoint_path(spec, folder=tmp_path, progress=lambda done, total: seen.append(done))
    assert path == tmp_path / "tiny.pth" and seen and seen[-1] == path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pth"]
    model = _load_from(spec, tmp_path)
    assert model.input_size == 64 and model.model_id.startswith("vit_b@" + file_digest(tiny_checkpoint)[:16])
    vit_l = dataclasses.replace(MODEL_SPECS["sam_vit_l"], checksum=spec.checksum, checkpoint_file="tiny.pth")
    with pytest.raises(ModelError, match="not a vit_l model"):
        _load_from(vit_l, tmp_path)


def _load_from(spec, folder):
    """Load a registered spec whose file sits in ``folder`` (as the model folder would hold it)."""
    import os

    old = os.environ.get("SAMSEG_MODEL_DIR")
    os.environ["SAMSEG_MODEL_DIR"] = str(folder)
    try:
        return load_model(spec, device="cpu", download=False)
    finally:
        if old is None:
            del os.environ["SAMSEG_MODEL_DIR"]
        else:
            os.environ["SAMSEG_MODEL_DIR"] = old


def test_checksum_mismatch_is_refused(tmp_path, tiny_checkpoint):
    spec = dataclasses.replace(MODEL_SPECS["sam_vit_b"], urls=(tiny_checkpoint.as_uri(),),
                               checksum="sha256:" + "0" * 64, checkpoint_file="tiny.pth")
    with pytest.raises(DownloadError, match="does not match its checksum"):
        checkpoint_path(spec, folder=tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "tiny.pth").write_bytes(tiny_checkpoint.read_bytes())
    with pytest.raises(ModelError, match="does not match its checksum"):
        checkpoint_path(spec, folder=tmp_path)


def test_offline_download_is_one_clear_error(tmp_path):
    spec = dataclasses.replace(MODEL_SPECS["sam_vit_b"], urls=("http://127.0.0.1:9/sam.pth",))
    with pytest.raises(DownloadError, match="could not download sam_vit_b.*check the network"):
        checkpoint_path(spec, folder=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_wrong_or_damaged_checkpoints_are_refused(tmp_path, tiny_checkpoint):
    litemedsam_file = checkpoint_path(resolve_spec("litemedsam"))
    with pytest.raises(ModelError, match="not a SAM ViT model"):
        load_model(resolve_spec(checkpoint=str(litemedsam_file), arch="vit_b"), device="cpu")
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(ModelError, match="could not be read"):
        load_model(resolve_spec(checkpoint=str(damaged), arch="vit_b"), device="cpu")
    with pytest.raises(ModelError, match="architecture"):
        resolve_spec(checkpoint=str(damaged), arch=None)


def test_device_choice():
    from SAMSegSlicerLib.models import choose_device, choose_precision

    assert choose_device("cpu") == "cpu"
    assert choose_device("auto") in ("cuda", "mps", "cpu")
    with pytest.raises(ModelError, match="unknown device"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU"):
            choose_device("cuda")
    assert choose_precision("cpu", "fp32") == "fp32"
    assert choose_precision("cpu") in ("fp32", "bf16")


def test_allocator_tuning_applies_on_linux_and_can_be_switched_off(monkeypatch):
    import sys

    monkeypatch.setenv(MALLOC_TUNING_ENV, "0")
    assert keep_freed_memory() is False
    monkeypatch.delenv(MALLOC_TUNING_ENV)
    assert keep_freed_memory() is sys.platform.startswith("linux")
