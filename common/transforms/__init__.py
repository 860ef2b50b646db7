"""MONAI-compatible transforms the papers need and MONAI lacks."""

from common.transforms.check_image import UNREADABLE, CheckImaged, InvalidImageError, error_reason
from common.transforms.head_crop import HeadForeground
from common.transforms.lesion_report import LesionReportd
from common.transforms.lesion_sampling import LesionSamplingWeightd, lesion_sampling_weights
from common.transforms.load_input import LoadInputd
from common.transforms.reference_label import LoadReferenced
from common.transforms.small_lesions import (
    RemoveSmallLesionsd,
    RemoveUnconfidentLesionsd,
    remove_small_lesions,
    remove_unconfident_lesions,
)
from common.transforms.world_box import CropWorldBoxd, patch_size_voxels

__all__ = [
    "UNREADABLE",
    "CheckImaged",
    "CropWorldBoxd",
    "HeadForeground",
    "InvalidImageError",
    "LesionReportd",
    "LesionSamplingWeightd",
    "LoadInputd",
    "LoadReferenced",
    "RemoveSmallLesionsd",
    "RemoveUnconfidentLesionsd",
    "error_reason",
    "lesion_sampling_weights",
    "patch_size_voxels",
    "remove_small_lesions",
    "remove_unconfident_lesions",
]
