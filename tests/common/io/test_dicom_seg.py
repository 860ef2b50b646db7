"""common.io.dicom_seg writes a DICOM SEG whose frames sit on the source slices, whatever the series' orientation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from monai.data import MetaTensor
from monai.transforms import LoadImage, Orientation

from common.io.dicom import write_dicom_series
from common.io.dicom_seg import SaveDicomSegd, write_dicom_seg

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
SEGMENT = {"segment_label": "Meningioma", "algorithm_name": "meningioma_agunet", "algorithm_version": "0.1.0"}


def _rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    i, j = [a for a in range(3) if a != axis]
    rotation = np.eye(3)
    rotation[[i, i, j, j], [i, j, i, j]] = [c, -s, s, c]
    return rotation


#: RAS affines of the synthetic series: oblique about two axes, and axial with the slices stored head to feet (the
#: slice normal points the other way, so ITK's slice order is the reverse of the files').
GRIDS = {
    "oblique": (_rotation(2, 20) @ _rotation(1, 10) @ np.diag([0.7, 0.9, 2.5]), [-40.0, 12.0, 30.0]),
    "reversed_slices": (np.diag([-0.8, -0.8, -3.0]), [50.0, 60.0, 40.0]),
}


@pytest.fixture(params=sorted(GRIDS))
def series(request, tmp_path) -> tuple[Path, np.ndarray]:
    """A 14 x 11 x 6 series of random integers; returns its folder and the volume (I, J, K as written)."""
    linear, origin = GRIDS[request.param]
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = linear, origin
    volume = np.random.default_rng(0).integers(0, 1000, size=(14, 11, 6)).astype(np.float32)
    folder = write_dicom_series(volume, affine, tmp_path / "series")
    loaded = LoadImage(image_only=True)(str(folder)).affine.numpy()
    direction = -1.0 if request.param == "reversed_slices" else 1.0  # ITK stacks the slices along the normal
    np.testing.assert_allclose(loaded[:3, 2], direction * linear[:, 2], atol=1e-3)
    return folder, volume


def _sources(folder: Path) -> dict[str, pydicom.Dataset]:
    return {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm")))}


def _assert_frames_on_source_slices(seg: pydicom.Dataset, folder: Path, expected_mask: np.ndarray) -> None:
    """Every frame references one source slice, has its geometry and holds ``expected_mask`` (I, J, K as written)."""
    sources = _sources(folder)
    first = next(iter(sources.values()))
    assert seg.SOPClassUID == SEGMENTATION_STORAGE and seg.SegmentationType == "BINARY"
    assert (seg.NumberOfFrames, seg.Rows, seg.Columns) == (len(sources), first.Rows, first.Columns)
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID and seg.StudyInstanceUID == first.StudyInstanceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == first.SeriesInstanceUID
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == set(sources)
    shared = seg.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose(
        shared.PlaneOrientationSequence[0].ImageOrientationPatient, first.ImageOrientationPatient, atol=1e-6
    )
    measures = shared.PixelMeasuresSequence[0]
    np.testing.assert_allclose(measures.PixelSpacing, first.PixelSpacing)
    np.testing.assert_allclose(measures.SpacingBetweenSlices, float(first.SliceThickness), atol=1e-4)
    pixels = seg.pixel_array
    frame_sources = []
    for frame, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        source = sources[item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        frame_sources.append(source.SOPInstanceUID)
        position = item.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose(position, source.ImagePositionPatient, atol=1e-6)
        k = int(source.InstanceNumber) - 1  # write_dicom_series: slice k is instance k + 1, pixel (r, c) is (c, r, k)
        np.testing.assert_array_equal(pixels[frame], expected_mask[:, :, k].T.astype(np.uint8))
    assert sorted(frame_sources) == sorted(sources), "one frame per source slice"


def test_seg_frames_match_the_source_slices(series, tmp_path):
    folder, volume = series
    image = LoadImage(image_only=True, ensure_channel_first=True)(str(folder))  # what inference reads (RAS)
    mask = image > 500
    path = write_dicom_seg(mask.numpy(), image.affine.numpy(), folder, tmp_path / "out" / "case_seg.dcm", **SEGMENT)
    seg = pydicom.dcmread(path)
    _assert_frames_on_source_slices(seg, folder, volume > 500)
    description = seg.SegmentSequence[0]
    assert description.SegmentLabel == "Meningioma"
    assert description.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"  # SNOMED CT Neoplasm
    assert description.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"  # Morph. abnormal structure
    algorithm = description.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("meningioma_agunet", "0.1.0")
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_any_voxel_order_of_the_mask_gives_the_same_seg(series, tmp_path):
    """A mask reoriented to RAS (or given in LPS) still lands on the right pixels: geometry decides, not axis order."""
    folder, volume = series
    image = LoadImage(image_only=True, ensure_channel_first=True)(str(folder))
    ras = Orientation(axcodes="RAS", labels=None)(MetaTensor((image > 500).float(), meta=image.meta))
    write_dicom_seg(ras, ras.affine.numpy(), folder, tmp_path / "ras.dcm", **SEGMENT)
    _assert_frames_on_source_slices(pydicom.dcmread(tmp_path / "ras.dcm"), folder, volume > 500)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine.numpy()
    write_dicom_seg((image > 500).numpy(), lps, folder, tmp_path / "lps.dcm", space="LPS", **SEGMENT)
    _assert_frames_on_source_slices(pydicom.dcmread(tmp_path / "lps.dcm"), folder, volume > 500)


def test_refuses_a_mask_on_another_grid_and_writing_into_the_series(series, tmp_path):
    folder, _ = series
    image = LoadImage(image_only=True, ensure_channel_first=True)(str(folder))
    shifted = image.affine.numpy().copy()
    shifted[:3, 3] += 0.5 * shifted[:3, 0]  # half a voxel along I
    with pytest.raises(ValueError, match="not the grid of the DICOM series"):
        write_dicom_seg(image.numpy() > 500, shifted, folder, tmp_path / "a.dcm", **SEGMENT)
    with pytest.raises(ValueError, match="not the grid of the DICOM series"):
        write_dicom_seg(image.numpy()[:, :, :, :-1] > 500, image.affine.numpy(), folder, tmp_path / "b.dcm", **SEGMENT)
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(ValueError, match="inputs are never written to"):
        write_dicom_seg(image.numpy() > 500, image.affine.numpy(), folder, folder / "seg.dcm", **SEGMENT)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_series_without_frame_of_reference_is_refused(tmp_path):
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    folder = write_dicom_series(np.ones((8, 8, 3), np.float32), affine, tmp_path / "series")
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        del ds.FrameOfReferenceUID
        ds.save_as(path)
    with pytest.raises(ValueError, match="Frame of Reference UID"):
        write_dicom_seg(np.ones((8, 8, 3)), affine, folder, tmp_path / "seg.dcm", **SEGMENT)


def test_transform_writes_seg_for_dicom_series_and_says_why_not_for_nifti(series, tmp_path, caplog):
    folder, volume = series
    image = LoadImage(image_only=True, ensure_channel_first=True)(str(folder))
    save = SaveDicomSegd("mask", str(tmp_path / "out"), anatomic_region="Meninges", **SEGMENT)
    out = save({"mask": (image > 500).float()})
    assert out["mask_dicom_seg"] == str(tmp_path / "out" / "series_seg.dcm")
    _assert_frames_on_source_slices(pydicom.dcmread(out["mask_dicom_seg"]), folder, volume > 500)

    nifti = MetaTensor(np.zeros((1, 4, 4, 4)), meta={"filename_or_obj": str(tmp_path / "case.nii.gz")})
    with caplog.at_level(logging.WARNING, logger="common.io.dicom_seg"):
        out = save({"mask": nifti})
    assert "mask_dicom_seg" not in out and "DICOM SEG needs a DICOM source" in caplog.text
    assert not (tmp_path / "out" / "case_seg.dcm").exists()
    for off in (False, "false", "False"):  # the command line passes --dicom_seg false as text
        disabled = SaveDicomSegd("mask", str(tmp_path / "off"), enabled=off, **SEGMENT)
        assert "mask_dicom_seg" not in disabled({"mask": (image > 500).float()})
    assert not (tmp_path / "off").exists() or not list((tmp_path / "off").iterdir())
    assert SaveDicomSegd("mask", str(tmp_path), enabled="true", **SEGMENT).enabled is True
    with pytest.raises(ValueError, match="--dicom_seg must be true or false"):
        SaveDicomSegd("mask", str(tmp_path), enabled="maybe", **SEGMENT)


def test_unknown_snomed_keyword_fails_early(tmp_path):
    with pytest.raises(ValueError, match="not a SNOMED CT keyword"):
        SaveDicomSegd("mask", str(tmp_path), anatomic_region="Meningies", **SEGMENT)
