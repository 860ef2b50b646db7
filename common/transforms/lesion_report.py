"""Per-case JSON report of the segmented tumour: total volume and each connected lesion."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import nibabel as nib
import numpy as np
from monai.data import FolderLayout, MetaTensor
from monai.transforms import MapTransform

from common.evaluation.lesions import find_lesions, max_axial_diameter_mm
from common.evaluation.metrics.segmentation import dice

__all__ = ["LesionReportd"]

logger = logging.getLogger(__name__)


class LesionReportd(MapTransform):
    """Write ``<output_dir>/<case><_postfix>.json``: tumour volume (ml), largest axial diameter (mm) and each lesion.

    The mask must already be on the input's own grid (after ``Invertd``), so volumes and centroids are those of the
    original scan. Centroids are in world millimetres in RAS (the NIfTI convention; DICOM LPS has x and y negated).
    The case name follows ``SaveImaged`` (input file name without extension), so the report sits beside the masks.

    Args:
        keys: the binary mask key (one key).
        output_dir: folder for the reports.
        postfix: appended to the case name. Defaults to ``"report"``.
        extra: constant fields added to every report (for example the threshold and the model name).
        reference_key: key of a reference label loaded on the input's own grid (:class:`LoadReferenced`), when the
            datalist gives one (a ``label`` entry, as the embedded sample has): its Dice with the mask goes into the
            report (``dice_vs_reference``) and the log. ``None`` never looks for one.
        details: called for every case; the fields it returns go into the report (for example what a localiser
            found, :meth:`vestibular_spvpa.localisation.CoarseToFineInferer.report`).
    """

    def __init__(
        self,
        keys: str,
        output_dir: str,
        postfix: str = "report",
        extra: Mapping[str, Any] | None = None,
        reference_key: str | None = "label",
        details: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(keys)
        self.layout = FolderLayout(output_dir=output_dir, postfix=postfix, extension=".json", makedirs=True)
        self.extra = dict(extra or {})
        self.reference_key = reference_key
        self.details = details

    def _reference_dice(self, data: Mapping[Hashable, Any], mask: np.ndarray, affine: np.ndarray) -> dict[str, Any]:
        """``{"reference": file, "dice_vs_reference": Dice}`` when ``data`` holds a reference label, else ``{}``."""
        label = data.get(self.reference_key) if self.reference_key else None
        if not isinstance(label, MetaTensor):
            return {}
        source = str(label.meta.get("filename_or_obj", self.reference_key))
        if tuple(label.shape[1:]) != mask.shape or not np.allclose(np.asarray(label.affine), affine, atol=1e-3):
            raise ValueError(
                f"{source}: the reference label's grid {tuple(label.shape[1:])} or affine differs from the input's "
                f"{mask.shape}; it must lie on the input's grid."
            )
        return {"reference": source, "dice_vs_reference": dice(mask, label.detach().cpu().numpy()[0] > 0.5)}

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = d[key]
            if not isinstance(mask, MetaTensor):
                raise TypeError(f"{key} must be a MetaTensor carrying its affine, got {type(mask).__name__}.")
            source = str(mask.meta.get("filename_or_obj", "case"))
            affine = np.asarray(mask.affine, dtype=np.float64)
            array = mask.detach().cpu().numpy()[0]
            lesions = find_lesions(array, affine)
            report = {
                "input": source,
                "orientation": "".join(nib.aff2axcodes(affine)),
                "spacing_mm": [float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)],
                "tumour_volume_ml": float(sum(lesion.volume_ml for lesion in lesions)),
                "max_axial_diameter_mm": max_axial_diameter_mm(array, affine),
                "num_lesions": len(lesions),
                "lesions": [lesion.to_dict() for lesion in lesions],
                "coordinates": "world RAS mm",
                **self._reference_dice(d, array > 0.5, affine),
                **(self.details() if self.details is not None else {}),
                **self.extra,
            }
            path = self.layout.filename(subject=source)
            tmp = f"{path}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=2)
            os.replace(tmp, path)
            d[f"{key}_report"] = str(path)
            dice_text = ""
            if "reference" in report:
                dice_text = f", Dice {report['dice_vs_reference']:.3f} against {report['reference']}"
            logger.info(
                f"{source}: tumour volume {report['tumour_volume_ml']:.2f} ml in {len(lesions)} lesion(s){dice_text}; "
                f"report {path}"
            )
        return d
