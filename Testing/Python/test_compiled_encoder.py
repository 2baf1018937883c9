"""The compiled encoder: its key, its checks (a corrupt or stale build is deleted, never used), the eager encoder
answering while a build runs, and compiled vs eager agreement -- with a real OpenVINO build of a small SAM ViT.

The real LiteMedSAM build (~30 s) is exercised by ``samseg models prepare`` and ``Testing/benchmarks/bench_core.py``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cli_run import one_error_line, run_cli

from SAMSegSlicerLib.models import compiled_encoder as compiled
from SAMSegSlicerLib.models import load_model, resolve_spec
from SAMSegSlicerLib.models.sam_model import SamArchitecture, build_sam_from_architecture
from SAMSegSlicerLib.worker import TorchWorker

# A SAM ViT of the real kind (windowed and global attention with relative positions), small enough to build in seconds.
SMALL_VIT = SamArchitecture(embed_dim=96, depth=2, num_heads=4, patch_size=16, image_size=128, window_size=4,
                            global_attn_indexes=(1,), out_chans=32, mask_in_chans=16, decoder_depth=2,
                            decoder_mlp_dim=64, num_multimask_outputs=3, iou_head_hidden_dim=32)
needs_openvino = pytest.mark.skipif(compiled.runtime_version() is None, reason="needs OpenVINO (pip install openvino)")


def _fake_model(**changes):
    model = SimpleNamespace(spec=SimpleNamespace(arch="litemedsam"), weights_checksum="sha256:" + "ab" * 32,
                            precision="bf16", input_size=256)
    for name, value in changes.items():
        setattr(model, name, value)
    return model


def test_key_changes_with_model_torch_runtime_and_cpu(monkeypatch):
    cpu = "x86_64-AVX512-1"
    base = compiled.artifact_key(_fake_model(), runtime="2026.1", cpu=cpu)
    others = [
        compiled.artifact_key(_fake_model(weights_checksum="sha256:" + "cd" * 32), runtime="2026.1", cpu=cpu),
        compiled.artifact_key(_fake_model(precision="fp32"), runtime="2026.1", cpu=cpu),
        compiled.artifact_key(_fake_model(), runtime="2026.2", cpu=cpu),
        compiled.artifact_key(_fake_model(), runtime="2026.1", cpu="x86_64-AVX2-1"),
    ]
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    others.append(compiled.artifact_key(_fake_model(), runtime="2026.1", cpu=cpu))
    digests = {key.digest() for key in [base, *others]}
    assert len(digests) == 1 + len(others)
    assert len({key.variant for key in [base, *others]}) == 1 + len(others)
    assert all(other.same_model(base) for other in others[2:]) and not others[0].same_model(base)


def test_cpu_signature_follows_the_cpu_flags(monkeypatch, tmp_path):
    import builtins

    real_open = builtins.open
    signatures = []
    for flags in ("fpu avx2 avx512f avx512_bf16", "fpu avx2"):
        info = tmp_path / f"cpuinfo-{len(signatures)}"
        info.write_text(f"model name\t: Some CPU\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda path, *a, info=info, **k:
                            real_open(info if str(path) == "/proc/cpuinfo" else path, *a, **k))
        signatures.append(compiled.cpu_signature())
    monkeypatch.setattr(builtins, "open", real_open)
    assert signatures[0] != signatures[1]


def test_switched_off_or_unsupported_precision_says_why(monkeypatch):
    model = _fake_model(device=torch.device("cpu"), precision="fp16")
    assert "precision fp16" in compiled.unavailable_reason(model)
    monkeypatch.setenv(compiled.ENABLE_ENV, "0")
    assert "turned off" in compiled.unavailable_reason(_fake_model(device=torch.device("cpu")))


def test_prepare_with_unsupported_precision_is_one_line(capsys):
    code, _, err = run_cli(capsys, "models", "prepare", "litemedsam", "--precision", "fp16")
    assert code == 2 and "precision fp16" in one_error_line(err)


# --- real builds of a small SAM ViT ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "small_vit.pth"
    torch.save(build_sam_from_architecture(SMALL_VIT).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def worker():
    worker = TorchWorker(name="compiled-encoder-test")
    yield worker
    worker.shutdown()


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMSEG_COMPILED_DIR", str(tmp_path / "compiled"))
    return tmp_path / "compiled"


def _load(worker, checkpoint, compiled_too=True):
    spec = resolve_spec(checkpoint=str(checkpoint), arch="vit_b")
    return worker.run(lambda: load_model(spec, "cpu", "fp32", compiled=compiled_too))


def _image():
    return np.random.default_rng(1).random((100, 120), dtype=np.float32)


def test_check_input_is_what_preprocess_makes(worker, small_checkpoint):
    model = _load(worker, small_checkpoint, compiled_too=False)
    expected = worker.run(lambda: model.preprocess([compiled.check_image(model.input_size)]).numpy())
    np.testing.assert_allclose(compiled.check_input(model), expected, atol=1e-6)


@needs_openvino
def test_build_agrees_with_eager_and_is_used_once_built(worker, small_checkpoint, root, built_folder):
    eager = _load(worker, small_checkpoint)
    assert eager.compiled_encoder is None and "not built yet" in eager.compiled_status
    manifest = compiled._read_manifest(built_folder, compiled.artifact_key(eager))
    assert manifest.compiled_error <= manifest.error_limit and manifest.max_abs_diff < 1e-2
    assert sorted(p.name for p in built_folder.iterdir()) == sorted([compiled.BLOB, compiled.REFERENCE,
                                                                     compiled.MANIFEST])
    assert not any(p.name.startswith(compiled.TEMP_PREFIX) for p in built_folder.parent.iterdir())
    shutil.copytree(built_folder, compiled.artifact_folder(compiled.artifact_key(eager)))

    model = _load(worker, small_checkpoint)
    assert model.compiled_encoder is not None and "in use" in model.compiled_status
    assert model.model_id == f"{eager.model_id}+{model.compiled_encoder.variant}" != eager.model_id
    got, expected = worker.run(lambda: model.encode([_image()])), worker.run(lambda: eager.encode([_image()]))
    assert got.shape == expected.shape and got.dtype == np.float16
    max_abs, relative = compiled.compare(got, expected)
    assert relative < 1e-3, (max_abs, relative)


@pytest.fixture(scope="module")
def built_folder(worker, small_checkpoint, tmp_path_factory):
    """One real build of the small ViT, copied by the tests that damage it."""
    root = tmp_path_factory.mktemp("built")
    eager = _load(worker, small_checkpoint, compiled_too=False)
    worker.run(lambda: compiled.build_artifact(eager, root=root))
    return compiled.artifact_folder(compiled.artifact_key(eager), root)


@needs_openvino
@pytest.mark.parametrize("damage", ["blob", "reference", "stale_key", "wrong_numbers"])
def test_damaged_or_stale_build_is_deleted_and_rebuilt(worker, small_checkpoint, root, built_folder, damage):
    eager = _load(worker, small_checkpoint)
    folder = compiled.artifact_folder(compiled.artifact_key(eager))
    shutil.copytree(built_folder, folder)
    assert _load(worker, small_checkpoint).compiled_encoder is not None  # the copy is good before the damage
    manifest_path = folder / compiled.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    if damage == "blob":
        data = bytearray((folder / compiled.BLOB).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / compiled.BLOB).write_bytes(bytes(data))
    elif damage == "reference":
        (folder / compiled.REFERENCE).write_bytes(b"not an array")
    elif damage == "stale_key":
        manifest["key"]["torch"] = "0.0.1"
        manifest_path.write_text(json.dumps(manifest))
    else:  # a reference that is not this encoder's, with a checksum that fits it: only the run check sees it
        reference = np.load(folder / compiled.REFERENCE)
        np.save(folder / compiled.REFERENCE, reference[..., ::-1].copy())
        manifest["files"][compiled.REFERENCE] = compiled._digest_file(folder / compiled.REFERENCE)
        manifest_path.write_text(json.dumps(manifest))

    model = _load(worker, small_checkpoint)
    assert model.compiled_encoder is None and model.model_id == eager.model_id
    assert "deleted, it will be built again" in model.compiled_status
    assert not folder.exists()
    if damage == "blob":
        worker.run(lambda: compiled.build_artifact(eager))
        assert _load(worker, small_checkpoint).compiled_encoder is not None


@needs_openvino
def test_eager_encoder_answers_while_building_then_the_model_switches(worker, small_checkpoint, root):
    model = _load(worker, small_checkpoint)
    eager_id = model.model_id
    gate, lines = threading.Event(), []

    def gated_builder(model_, progress, root_):
        assert gate.wait(60)
        compiled.run_builder_process(model_, progress, root_)  # the real builder process

    done = compiled.start_background_build(model, worker, lines.append, builder=gated_builder)
    assert compiled.start_background_build(model, worker, lines.append) is done  # one build per model at a time
    embedding = worker.run(lambda: model.encode([_image()]))  # answered now, by the eager encoder
    assert embedding.shape[0] == 1 and model.model_id == eager_id and not done.done()
    gate.set()
    line = done.result(timeout=180)
    assert line.startswith("Compiled encoder in use"), line
    assert model.compiled_encoder is not None and model.model_id != eager_id
    assert any("(1/5)" in text for text in lines) and lines[-1] == line


def test_failed_build_leaves_the_eager_encoder(worker, small_checkpoint, root):
    if compiled.runtime_version() is None:
        pytest.skip("needs OpenVINO")
    model = _load(worker, small_checkpoint)

    def failing_builder(model_, progress, root_):
        raise compiled.ModelError("disk full")

    line = compiled.start_background_build(model, worker, None, builder=failing_builder).result(timeout=60)
    assert "eager encoder stays in use" in line and "disk full" in line and model.compiled_encoder is None


def test_tiny_ids_unchanged_without_a_build(worker, small_checkpoint, root):
    """A machine without a build behaves as before: the same model id, the eager encoder."""
    model = _load(worker, small_checkpoint)
    assert model.compiled_encoder is None and model.model_id == model.base_model_id
    assert dataclasses.is_dataclass(compiled.ArtifactKey)
