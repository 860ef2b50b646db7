"""Loading a datalist's optional reference label for inference, in a way MONAI Label tolerates."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import LoadImage, MapTransform

__all__ = ["LoadReferenced"]


class LoadReferenced(MapTransform):
    """Read the reference label a datalist entry may give (``"label"``) with MONAI's ``LoadImage``; cases without one
    pass through.

    The label then travels as the evaluator's ``label`` (MONAI's ``prepare_batch`` keeps tensors only) to
    :class:`~common.transforms.LesionReportd`, which reports the mask's Dice against it. This is ``LoadImaged`` with
    ``allow_missing_keys``, except that it is not a ``LoadImaged``: MONAI Label wraps every ``LoadImaged`` of a bundle
    in a loader that indexes each of its keys, and an ``/infer`` request sends an image alone.
    """

    def __init__(self, keys: KeysCollection = "label") -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.loader = LoadImage(image_only=True, ensure_channel_first=True)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if isinstance(d[key], (str, os.PathLike)):
                d[key] = self.loader(d[key])
        return d
