"""MONAI-compatible transforms the papers need and MONAI lacks."""

from common.transforms.check_image import CheckImaged, InvalidImageError
from common.transforms.head_crop import HeadForeground
from common.transforms.lesion_report import LesionReportd

__all__ = ["CheckImaged", "HeadForeground", "InvalidImageError", "LesionReportd"]
