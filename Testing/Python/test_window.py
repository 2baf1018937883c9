"""Intensity windows: once per volume, CT and MR told apart without being told, source untouched."""

from __future__ import annotations

import numpy as np
import pytest

from SAMSegSlicerLib.errors import InputError
from SAMSegSlicerLib.volume import read_volume
from SAMSegSlicerLib.window import resolve_window


@pytest.mark.parametrize("relative, kind", [
    ("ct_abdomen_3mm/image.nii.gz", "CT"), ("ct_lung_nodule/image.nrrd", "CT"),
    ("mr_abdomen_small/image.nii.gz", "percentile"), ("mr_brain_tumor/image.nrrd", "percentile"),
    ("mr_brain_mprage_dicom", "percentile"), ("ct_3slice_dicom/series", "CT"),
])
def test_auto_window_tells_ct_from_mr(data_dir, relative, kind):
    volume = read_volume(data_dir / relative)
    window = resolve_window("auto", volume.voxels_kji, volume.modality)
    assert kind in window.name
    windowed = window.apply(volume.voxels_kji)
    assert windowed.min() >= 0 and windowed.max() <= 1
    # Most of the body must land inside the window, not clipped to black or white.
    inside = (windowed > 0.02) & (windowed < 0.98)
    assert inside.mean() > 0.15


def test_window_is_per_volume_not_per_slice(data_dir):
    volume = read_volume(data_dir / "ct_abdomen_3mm" / "image.nii.gz")
    window = resolve_window("auto", volume.voxels_kji)
    before = volume.voxels_kji.copy()
    a = window.apply(volume.voxels_kji[10])
    b = window.apply(volume.voxels_kji[60])
    value = 40.0
    assert window.apply(np.array([value]))[0] == pytest.approx(0.5)
    assert a.dtype == np.float32 and b.dtype == np.float32
    assert np.array_equal(before, volume.voxels_kji)


def test_presets_and_custom_windows():
    voxels = np.zeros((2, 2, 2), np.int16)
    assert resolve_window("lung", voxels).level == -600
    custom = resolve_window("50,350", voxels)
    assert (custom.low, custom.high) == (-125, 225)
    with pytest.raises(InputError, match="unknown window"):
        resolve_window("liver-ish", voxels)
    with pytest.raises(InputError, match="positive"):
        resolve_window("40,0", voxels)
