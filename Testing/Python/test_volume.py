"""Reading volumes and label maps, anatomical slicing, writing label maps back on the exact grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from SAMSegSlicerLib.errors import InputError
from SAMSegSlicerLib.volume import Volume, read_labelmap, read_volume, write_labelmap


def _write(array_kji, path, spacing=(1.0, 1.0, 1.0), direction=None, origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(array_kji)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def test_nifti_geometry_is_kept(data_dir):
    volume = read_volume(data_dir / "ct_abdomen_3mm" / "image.nii.gz")
    assert volume.shape_ijk == (122, 101, 112)
    assert volume.spacing_ijk == pytest.approx((3.0, 3.0, 3.0))
    # The file's direction is diag(-1, -1, 1) in LPS, i.e. i runs to patient Right... reversed: +R in RAS.
    assert np.allclose(volume.ijk_to_ras[:3, :3], np.diag([3.0, 3.0, 3.0]))
    image = sitk.ReadImage(str(data_dir / "ct_abdomen_3mm" / "image.nii.gz"))
    origin_lps = np.array(image.GetOrigin())
    assert volume.ijk_to_ras[:3, 3] == pytest.approx(origin_lps * [-1, -1, 1])
    assert not volume.voxels_kji.flags.writeable


def test_axial_slices_in_display_orientation(ct3mm, ct3mm_labels):
    axes = ct3mm.axes("axial")
    stack = axes.stack(ct3mm_labels == 5)  # liver: patient right = screen left in Slicer's axial view
    index = int(np.argmax(stack.reshape(stack.shape[0], -1).sum(axis=1)))
    _, cols = np.nonzero(stack[index])
    assert cols.mean() < stack.shape[2] / 2
    spleen = axes.stack(ct3mm_labels == 1)[index]
    assert np.nonzero(spleen)[1].mean() > stack.shape[2] / 2


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_slice_rc_ijk_ras_round_trip(ct3mm, axis):
    axes = ct3mm.axes(axis)
    rng = np.random.default_rng(1)
    rc = rng.uniform(0, np.array(axes.slice_shape) - 1, size=(20, 2))
    ijk = axes.rc_to_ijk(7, rc)
    ras = ct3mm.ijk_to_ras_points(ijk)
    index, rc_back = axes.ijk_to_index_rc(ct3mm.ras_to_ijk(ras))
    assert np.allclose(index, 7) and np.allclose(rc_back, rc)
    # A pixel of the stack is the voxel its (index, rc) names.
    stack = axes.stack(ct3mm.voxels_kji)
    i, j, k = np.rint(axes.rc_to_ijk(7, [[3, 5]])[0]).astype(int)
    assert stack[7, 3, 5] == ct3mm.voxels_kji[k, j, i]


def test_dicom_series_reads_with_modality(data_dir):
    volume = read_volume(data_dir / "ct_3slice_dicom" / "series")
    assert volume.shape_ijk == (512, 512, 3)
    assert volume.modality == "CT"


def test_oblique_dicom_serves_closest_axes(data_dir):
    volume = read_volume(data_dir / "mr_brain_mprage_dicom")
    assert volume.modality == "MR"
    assert volume.axes("axial").n_slices == 130
    normals = {volume.axes(a).normal_ijk for a in ("axial", "coronal", "sagittal")}
    assert normals == {0, 1, 2}


def test_uneven_dicom_slices_are_reported(data_dir):
    volume = read_volume(data_dir / "ct_tiny_dicom")
    assert volume.shape_ijk == (16, 16, 4)
    assert any("uneven" in note for note in volume.notes)


def test_largest_series_is_chosen_and_said(data_dir, tmp_path):
    import shutil

    for name in sorted((data_dir / "ct_3slice_dicom" / "series").iterdir()):
        shutil.copy(name, tmp_path / name.name)
    shutil.copy(data_dir / "ct_3slice_dicom" / "labels" / "liver.dcm", tmp_path / "seg.dcm")
    for name in sorted((data_dir / "ct_tiny_dicom").iterdir())[:2]:
        shutil.copy(name, tmp_path / f"tiny_{name.name}")
    volume = read_volume(tmp_path)
    assert volume.shape_ijk == (512, 512, 3)
    assert any("using the largest" in note for note in volume.notes)


def test_two_dimensional_image_is_a_one_slice_volume(tmp_path):
    path = tmp_path / "slice.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(64 * 48, dtype=np.uint8).reshape(48, 64)), str(path))
    volume = read_volume(path)
    assert volume.shape_ijk == (64, 48, 1)
    assert volume.axes("axial").n_slices == 1


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("hello"), "not an image file"),
    (lambda p: p.mkdir(), "no DICOM series"),
])
def test_bad_input_is_one_clear_error(tmp_path, make, message):
    target = tmp_path / "bad.nii.gz"
    make(target)
    with pytest.raises(InputError, match=message):
        read_volume(target)


def test_four_dimensional_image_is_refused(tmp_path):
    path = tmp_path / "4d.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([sitk.Image(4, 4, 4, sitk.sitkInt16)] * 3), str(path))
    with pytest.raises(InputError, match="4-D"):
        read_volume(path)


def test_labels_on_another_grid_are_resampled(tmp_path):
    image = _write(np.zeros((10, 20, 20), np.int16), tmp_path / "image.nii.gz", spacing=(1.0, 1.0, 1.0))
    labels = np.zeros((5, 10, 10), np.uint8)
    labels[2, 3:6, 4:8] = 3
    label_path = _write(labels, tmp_path / "labels.nii.gz", spacing=(2.0, 2.0, 2.0))
    volume = read_volume(image)
    resampled = read_labelmap(label_path, volume)
    assert resampled.shape == (10, 20, 20)
    assert resampled[4, 6, 8] == 3 and resampled[0, 0, 0] == 0


def test_labels_that_do_not_overlap_are_refused(tmp_path):
    image = _write(np.zeros((4, 8, 8), np.int16), tmp_path / "image.nii.gz")
    label_path = _write(np.ones((4, 8, 8), np.uint8), tmp_path / "labels.nii.gz", origin=(500.0, 0.0, 0.0))
    with pytest.raises(InputError, match="does not overlap"):
        read_labelmap(label_path, read_volume(image))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".seg.nrrd", ".mha"])
def test_labelmap_written_on_exact_grid(tmp_path, suffix):
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    image = _write(np.zeros((3, 5, 6), np.int16), tmp_path / "image.nii.gz", spacing=(0.7, 0.9, 2.5),
                   direction=direction, origin=(10.0, -20.0, 30.0))
    volume = read_volume(image)
    labels = np.zeros((3, 5, 6), np.uint16)
    labels[1, 2, 3] = 7
    out = write_labelmap(tmp_path / f"out{suffix}", labels, volume, {7: "liver"})
    back = sitk.ReadImage(str(out))
    assert back.GetSpacing() == pytest.approx((0.7, 0.9, 2.5))
    assert back.GetOrigin() == pytest.approx((10.0, -20.0, 30.0))
    assert back.GetDirection() == pytest.approx(direction)
    assert np.array_equal(sitk.GetArrayFromImage(back), labels)
    if suffix == ".seg.nrrd":
        assert back.GetMetaData("Segment0_Name") == "liver"
        assert back.GetMetaData("Segment0_LabelValue") == "7"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["image.nii.gz", f"out{suffix}"])


def test_volume_is_never_modified():
    voxels = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    volume = Volume(voxels, np.eye(4))
    with pytest.raises(ValueError):
        volume.voxels_kji[0, 0, 0] = 5
