"""DICOM in, DICOM SEG out: ``--dicom_seg true`` through real ``python -m monai.bundle run`` on a phantom series.

Each bundle segments a phantom turned into an oblique DICOM series (the meningioma one also a NIfTI file, which gets
a message instead of a SEG) with an untrained tiny network; the SEG is read back with pydicom and checked against the
source slices and the NIfTI mask of the same run.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from bundle_helpers import TINY_MENINGIOMA, TINY_VESTIBULAR, bundle_dir, run_config, workflow, write_oblique_lps

from common.io.dicom import write_dicom_series
from common.io.dicom_seg import SaveDicomSegd

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: bundle: tiny overrides, phantom fixture, oblique voxel size (mm) of the DICOM series, segment label, threshold.
#: The thresholds cut the untrained networks' probabilities (seed 0) into a mask that is neither empty nor full: the
#: meningioma network gives 0.473 in the head box it sees and the inversion 0 outside, the vestibular one 0.383 to
#: 0.386 (median 0.3838) everywhere.
BUNDLES = {
    "meningioma_agunet": (TINY_MENINGIOMA, "meningioma_phantoms", (3.1, 2.7, 5.2), "Meningioma", 0.25),
    "vestibular_spvpa": (TINY_VESTIBULAR, "vestibular_phantoms", (1.7, 1.9, 5.5), "Vestibular schwannoma", 0.3838),
}
_LPS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> dict[str, Path]:
    """Each bundle's tiny network with seeded random weights, saved as the plain state dict inference loads."""
    folder = tmp_path_factory.mktemp("untrained")
    paths = {}
    for bundle, (tiny, *_) in BUNDLES.items():
        torch.manual_seed(0)
        network = workflow(bundle, ["inference"], "infer", **tiny).parser.get_parsed_content("network_def")
        paths[bundle] = folder / f"{bundle}.pt"
        torch.save(network.state_dict(), paths[bundle])
    return paths


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_dicom_series_in_dicom_seg_out(bundle, untrained, request, tmp_path):
    tiny, phantoms, spacing, label, threshold = BUNDLES[bundle]
    phantom = next((request.getfixturevalue(phantoms) / "imagesTs").glob("*.nii.gz"))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    with_nifti = bundle == "meningioma_agunet"  # one NIfTI input is enough to check the message (5 s a case)
    plain = (inputs if with_nifti else tmp_path) / "plain.nii.gz"
    write_oblique_lps(phantom, plain, spacing)
    oblique = nib.load(str(plain))
    series = write_dicom_series(np.asarray(oblique.dataobj), oblique.affine, inputs / "case")
    files = sorted(series.iterdir())
    before = {p.name: p.read_bytes() for p in files}

    out = tmp_path / "out"
    proc = run_config(
        bundle,
        ("inference",),
        tiny,
        dataset_dir=str(inputs),
        output_dir=str(out),
        ckpt_path=str(untrained[bundle]),
        threshold=threshold,
        dicom_seg=True,
    )
    log = proc.stdout + proc.stderr
    assert {p.name: p.read_bytes() for p in sorted(series.iterdir())} == before, "the source series was modified"
    if with_nifti:
        assert "plain.nii.gz: not a DICOM series folder; DICOM SEG needs a DICOM source" in log
        assert (out / "plain_seg.nii.gz").is_file()
    assert sorted(p.name for p in out.glob("*.dcm")) == ["case_seg.dcm"]

    seg = pydicom.dcmread(out / "case_seg.dcm")
    sources = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(p) for p in files)}
    first = next(iter(sources.values()))
    assert seg.SOPClassUID == SEGMENTATION_STORAGE and seg.SegmentationType == "BINARY"
    assert seg.SegmentSequence[0].SegmentLabel == label
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == bundle and algorithm.AlgorithmVersion
    assert (seg.StudyInstanceUID, seg.FrameOfReferenceUID) == (first.StudyInstanceUID, first.FrameOfReferenceUID)
    assert seg.SeriesInstanceUID != first.SeriesInstanceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == first.SeriesInstanceUID
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == set(sources)
    assert (seg.NumberOfFrames, seg.Rows, seg.Columns) == (len(sources), first.Rows, first.Columns)
    shared = seg.SharedFunctionalGroupsSequence[0]
    orientation = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    np.testing.assert_allclose(orientation, first.ImageOrientationPatient, atol=1e-6)
    np.testing.assert_allclose(shared.PixelMeasuresSequence[0].PixelSpacing, first.PixelSpacing)

    # the NIfTI mask of the same run, on the series' grid: I along the rows' direction, J down the columns
    nifti = nib.load(str(out / "case_seg.nii.gz"))
    mask = np.asarray(nifti.dataobj)
    lps = _LPS @ nifti.affine[:3, :3]
    np.testing.assert_allclose(lps[:, 0] / np.linalg.norm(lps[:, 0]), orientation[:3], atol=1e-4)
    np.testing.assert_allclose(lps[:, 1] / np.linalg.norm(lps[:, 1]), orientation[3:], atol=1e-4)
    world_to_voxel = np.linalg.inv(nifti.affine)
    pixels, slices = seg.pixel_array, []
    for frame, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        source = sources[item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(position, source.ImagePositionPatient, atol=1e-6)
        voxel = world_to_voxel[:3] @ np.append(_LPS @ position, 1.0)  # LPS -> RAS -> NIfTI voxel: (0, 0, k)
        np.testing.assert_allclose(voxel, [0.0, 0.0, np.rint(voxel[2])], atol=1e-3)
        slices.append(int(np.rint(voxel[2])))
        np.testing.assert_array_equal(pixels[frame], mask[:, :, slices[-1]].T)
    assert sorted(slices) == list(range(mask.shape[2])), "one frame per slice"
    assert 0 < pixels.sum() < pixels.size, "choose a threshold that gives a mask that is neither empty nor full"


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_dicom_seg_is_off_by_default(bundle):
    flow = workflow(bundle, ["inference"], "infer", bundle_root=str(bundle_dir(bundle)))  # the vestibular localiser's
    transforms = flow.parser.get_parsed_content("postprocessing").transforms  # weights load as its report is built
    (save,) = [t for t in transforms if isinstance(t, SaveDicomSegd)]
    assert save.enabled is False and save.segment["algorithm_name"] == bundle
