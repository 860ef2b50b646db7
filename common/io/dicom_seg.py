"""Writing a binary tumour mask as a DICOM Segmentation (SEG) object that references its source DICOM series.

A segmented DICOM series goes back to PACS and viewers as a DICOM SEG instance (Segmentation Storage,
``1.2.840.10008.5.1.4.1.1.66.4``): one ``BINARY`` segment, one frame per source slice (empty ones included), each
frame with the Image Position (Patient) of its source slice and a Source Image Sequence entry pointing at it, the
series in the Referenced Series Sequence, and the patient, study and frame of reference of the source. The object is
built by highdicom (Herrmann et al., "Highdicom: a Python library for standardized encoding of image annotations and
machine learning model outputs in pathology and radiology", J Digit Imaging 2022).

Geometry is never assumed: the source slices are the files ITK read for the case (the same series and slice order as
MONAI's ``ITKReader``), and each pixel of each slice is located in the mask's voxel grid through the slices' Image
Position / Orientation (Patient) and Pixel Spacing (DICOM LPS) and the mask's affine (MONAI's RAS, or LPS when its
metadata says so). The writer refuses a mask whose grid is not the series' grid: every source pixel must fall on a
mask voxel centre and every voxel must be covered exactly once.

highdicom (and pydicom) are optional: ``pip install -e ".[dicom]"``. They are imported only when a SEG is written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from monai.data import FolderLayout, MetaTensor
from monai.transforms import MapTransform

from common.flags import as_flag

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["SaveDicomSegd", "read_source_series", "write_dicom_seg"]

logger = logging.getLogger(__name__)

#: What to install when highdicom is missing.
INSTALL_HINT = 'DICOM SEG output needs highdicom: pip install highdicom (or pip install -e ".[dicom]")'
#: RAS <-> LPS: x and y change sign.
_FLIP_XY = np.diag([-1.0, -1.0, 1.0, 1.0])


def _require_highdicom() -> None:
    try:
        import highdicom  # noqa: F401
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error


def read_source_series(folder: str | os.PathLike) -> list[Dataset]:
    """The datasets (without pixel data) of the DICOM series in ``folder`` that MONAI's ``ITKReader`` reads.

    The file list comes from ITK's ``GDCMSeriesFileNames`` set up as ``ITKReader`` does (series details, restricted
    by Series Date; the first series of the folder), so the slices are those of the case and in ITK's order: along
    the slice normal, the order of the volume's third axis.

    Raises:
        FileNotFoundError: no DICOM series in ``folder``.
    """
    import itk
    import pydicom

    names = itk.GDCMSeriesFileNames.New()
    names.SetUseSeriesDetails(True)
    names.AddSeriesRestriction("0008|0021")  # Series Date, as monai.data.ITKReader
    names.SetDirectory(str(folder))
    series = names.GetSeriesUIDs()
    if len(series) < 1:
        raise FileNotFoundError(f"no DICOM series in {folder}.")
    return [pydicom.dcmread(str(name), stop_before_pixels=True) for name in names.GetFileNames(series[0])]


def _slice_frames(mask: np.ndarray, affine_lps: np.ndarray, sources: Sequence[Dataset], tolerance: float) -> np.ndarray:
    """The ``(len(sources), Rows, Columns)`` frames of ``mask`` (I, J, K) on the source slices' pixel grids.

    Pixel ``(r, c)`` of a slice lies at ``IPP + c * column_spacing * row_cosines + r * row_spacing * column_cosines``
    (LPS mm); ``inv(affine_lps)`` takes it to a voxel index of the mask, which must be within ``tolerance`` voxels of
    an integer index inside the grid.
    """
    world_to_voxel = np.linalg.inv(affine_lps)
    seen = np.zeros(mask.shape, dtype=np.int32)
    frames = []
    for source in sources:
        if int(source.get("NumberOfFrames", 1) or 1) != 1:
            raise ValueError(f"{source.filename}: multi-frame source images are not supported; use a series of slices.")
        missing = [k for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing") if k not in source]
        if missing:
            raise ValueError(f"{source.filename}: no {', '.join(missing)}; cannot place the slice in space.")
        position = np.asarray(source.ImagePositionPatient, dtype=np.float64)
        cosines = np.asarray(source.ImageOrientationPatient, dtype=np.float64).reshape(2, 3)
        row_spacing, column_spacing = (float(s) for s in source.PixelSpacing)
        origin = world_to_voxel[:3] @ np.append(position, 1.0)
        along_row = world_to_voxel[:3, :3] @ (cosines[0] * column_spacing)  # one column to the right
        down_column = world_to_voxel[:3, :3] @ (cosines[1] * row_spacing)  # one row down
        rows, columns = np.arange(int(source.Rows)), np.arange(int(source.Columns))
        voxel = origin + rows[:, None, None] * down_column + columns[None, :, None] * along_row
        index = np.rint(voxel).astype(np.int64)
        off_grid = float(np.abs(voxel - index).max())
        outside = np.any((index < 0) | (index >= np.asarray(mask.shape)), axis=-1)
        if off_grid > tolerance or outside.any():
            raise ValueError(
                f"the mask grid {mask.shape} is not the grid of the DICOM series: slice {source.filename} lies "
                f"{off_grid:.3g} voxels off the voxel centres{' and partly outside the mask' if outside.any() else ''}."
            )
        i, j, k = index[..., 0], index[..., 1], index[..., 2]
        np.add.at(seen, (i, j, k), 1)
        frames.append(mask[i, j, k])
    if not np.all(seen == 1):
        raise ValueError(
            f"the mask grid {mask.shape} is not the grid of the DICOM series: {int((seen == 0).sum())} voxels are on "
            f"no source slice and {int((seen > 1).sum())} on several."
        )
    return np.stack(frames)


def write_dicom_seg(
    mask: np.ndarray,
    affine: np.ndarray,
    source_folder: str | os.PathLike,
    output_path: str | os.PathLike,
    segment_label: str,
    algorithm_name: str,
    algorithm_version: str,
    property_category: str = "MorphologicallyAbnormalStructure",
    property_type: str = "Neoplasm",
    anatomic_region: str | None = None,
    series_number: int | None = None,
    space: str = "RAS",
    tolerance_voxels: float = 0.1,
) -> Path:
    """Write ``mask`` as a one-segment BINARY DICOM SEG referencing the DICOM series in ``source_folder``.

    Frame ``f`` holds the mask on the pixel grid of the source slice it references; highdicom orders the frames along
    the slice normal. Orientation and pixel spacing are the source's; Spacing Between Slices is computed from the
    slice positions (never copied: ITK's writer, for one, stores 1 whatever the spacing).

    Args:
        mask: binary mask on the series' own grid, ``(I, J, K)`` or ``(1, I, J, K)``; non-zero is the segment.
        affine: ``4 x 4`` voxel-to-world matrix of ``mask`` in ``space``.
        source_folder: the DICOM series folder the mask was segmented from; never written to.
        output_path: the ``.dcm`` file to write (atomically: a temporary file renamed over it). It may not lie in
            ``source_folder``.
        segment_label: Segment Label, e.g. ``"Meningioma"``.
        algorithm_name: Algorithm Name of the segment's algorithm identification (the bundle's name); also the
            Manufacturer's Model Name.
        algorithm_version: Algorithm Version (the bundle's version); also the Software Versions.
        property_category: Segmented Property Category, a SNOMED CT keyword of ``pydicom.sr.codedict.codes.SCT``.
            Defaults to ``"MorphologicallyAbnormalStructure"`` (49755003).
        property_type: Segmented Property Type, a SNOMED CT keyword. Defaults to ``"Neoplasm"`` (108369006).
        anatomic_region: Anatomic Region Sequence entry, a SNOMED CT keyword (``"Meninges"``,
            ``"VestibulocochlearNerve"``), or ``None`` (the default) for none.
        series_number: Series Number of the SEG; ``None`` (the default): the source's plus 1000 (1000 without one),
            so viewers list the SEG after its source.
        space: world convention of ``affine``: ``"RAS"`` (MONAI's default, the default here) or ``"LPS"`` (DICOM).
        tolerance_voxels: how far (in voxels) a source pixel may lie from a mask voxel centre. Defaults to 0.1.

    Returns:
        ``output_path``.

    Raises:
        ValueError: the mask grid is not the series' grid, a source slice lacks geometry, the series has no Frame of
            Reference UID, or ``output_path`` lies in ``source_folder``.
        ImportError: highdicom is not installed.
    """
    _require_highdicom()
    import highdicom as hd
    from pydicom.sr.codedict import codes

    source_folder, output_path = Path(source_folder), Path(output_path)
    if source_folder.resolve() in output_path.resolve().parents:
        raise ValueError(
            f"{output_path} lies in the source series folder {source_folder}; inputs are never written to."
        )
    if space.upper() not in ("RAS", "LPS"):
        raise ValueError(f"space must be 'RAS' or 'LPS', got {space!r}.")
    array = np.asarray(mask)
    array = array[0] if array.ndim == 4 and array.shape[0] == 1 else array
    if array.ndim != 3:
        raise ValueError(f"mask must be (I, J, K) or (1, I, J, K), got shape {np.asarray(mask).shape}.")
    affine_lps = np.asarray(affine, dtype=np.float64)
    affine_lps = _FLIP_XY @ affine_lps if space.upper() == "RAS" else affine_lps

    sources = read_source_series(source_folder)
    if any("FrameOfReferenceUID" not in s for s in sources):
        raise ValueError(f"the DICOM series in {source_folder} has no Frame of Reference UID, which DICOM SEG needs.")
    frames = _slice_frames(array != 0, affine_lps, sources, tolerance_voxels)

    for source in sources:  # in-memory copies: highdicom then derives the spacing from the slice positions
        source.pop("SpacingBetweenSlices", None)
    first = sources[0]
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=segment_label,
        segmented_property_category=getattr(codes.SCT, property_category),
        segmented_property_type=getattr(codes.SCT, property_type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=str(algorithm_version)
        ),
        anatomic_regions=[getattr(codes.SCT, anatomic_region)] if anatomic_region else None,
    )
    if series_number is None:
        series_number = int(first.get("SeriesNumber") or 0) + 1000
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="mri-tumour-bundles",
        manufacturer_model_name=algorithm_name,
        software_versions=str(algorithm_version),
        device_serial_number="none",
        omit_empty_frames=False,
        series_description=f"{segment_label} ({algorithm_name} {algorithm_version})"[:64],
    )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(output_path.name + ".tmp")
    try:
        seg.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, output_path)
    finally:
        tmp.unlink(missing_ok=True)
    return output_path


class SaveDicomSegd(MapTransform):
    """Postprocessing transform: write ``<output_dir>/<case><_postfix>.dcm``, a DICOM SEG of the mask, for DICOM inputs.

    Placed after ``Invertd`` (the mask back on the input's grid) and beside the ``SaveImaged`` of the NIfTI mask,
    whose naming it follows (the DICOM folder's name). The case's source is the mask's ``filename_or_obj``: a DICOM
    series folder gets a SEG referencing that series (see :func:`write_dicom_seg`); any other input (a NIfTI file)
    gets a log line saying that DICOM SEG needs a DICOM series, and only its NIfTI mask. The SEG's path goes to
    ``<key>_dicom_seg``.

    Args:
        keys: the binary mask key (a MetaTensor with its affine).
        output_dir: folder for the SEG files.
        segment_label: Segment Label (``"Meningioma"``, ``"Vestibular schwannoma"``).
        algorithm_name: the bundle's name, for the algorithm identification.
        algorithm_version: the bundle's version.
        enabled: ``False`` makes the transform pass the data through (the bundles' ``dicom_seg`` key; the text
            ``"true"`` / ``"false"`` that ``python -m monai.bundle run --dicom_seg false`` passes is understood).
            Defaults to ``True``; when on, highdicom must be installed (checked here, before any case runs).
        postfix: appended to the case name. Defaults to ``"seg"``: ``<case>_seg.dcm`` beside ``<case>_seg.nii.gz``.
        property_category, property_type, anatomic_region: SNOMED CT keywords, as in :func:`write_dicom_seg`.
    """

    def __init__(
        self,
        keys: str,
        output_dir: str,
        segment_label: str,
        algorithm_name: str,
        algorithm_version: str,
        enabled: bool | str = True,
        postfix: str = "seg",
        property_category: str = "MorphologicallyAbnormalStructure",
        property_type: str = "Neoplasm",
        anatomic_region: str | None = None,
    ) -> None:
        super().__init__(keys)
        self.enabled = as_flag(enabled, "dicom_seg")
        if self.enabled:
            _require_highdicom()
            from pydicom.sr.codedict import codes

            for name in (property_category, property_type, anatomic_region):
                if name is not None and name not in codes.SCT:
                    raise ValueError(f"{name!r} is not a SNOMED CT keyword of pydicom.sr.codedict.codes.SCT.")
        self.layout = FolderLayout(output_dir=output_dir, postfix=postfix, extension=".dcm", makedirs=True)
        self.segment = {
            "segment_label": segment_label,
            "algorithm_name": algorithm_name,
            "algorithm_version": str(algorithm_version),
            "property_category": property_category,
            "property_type": property_type,
            "anatomic_region": anatomic_region,
        }

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if not self.enabled:
            return d
        for key in self.key_iterator(d):
            mask = d[key]
            if not isinstance(mask, MetaTensor):
                raise TypeError(f"{key} must be a MetaTensor carrying its affine, got {type(mask).__name__}.")
            source = str(mask.meta.get("filename_or_obj", ""))
            if not Path(source).is_dir():
                logger.warning(
                    f"{source}: not a DICOM series folder; DICOM SEG needs a DICOM source, so only the NIfTI mask "
                    "was written."
                )
                continue
            path = write_dicom_seg(
                mask.detach().cpu().numpy(),
                np.asarray(mask.affine, dtype=np.float64),
                source,
                self.layout.filename(subject=source),
                space=str(mask.meta.get("space", "RAS")),
                **self.segment,
            )
            logger.info(f"{source}: DICOM SEG {path}")
            d[f"{key}_dicom_seg"] = str(path)
        return d
