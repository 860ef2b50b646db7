"""Loading the image to segment, with an error that names the file when it cannot be read."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.data import ImageReader
from monai.transforms import LoadImaged

from common.transforms.check_image import UNREADABLE, InvalidImageError, error_reason

__all__ = ["LoadInputd"]


class LoadInputd(LoadImaged):
    """MONAI's ``LoadImaged``, whose failure to read a file (corrupt, truncated, not an image) raises
    :class:`~common.transforms.InvalidImageError` naming the file and the reader's error.

    Batch inference lists the case with that message; MONAI Label, which calls a bundle's ``LoadImaged`` through its
    own wrapper, answers an ``/infer`` request for such a file with status 422 and the message.
    """

    def __call__(self, data: Mapping[Hashable, Any], reader: ImageReader | None = None) -> dict[Hashable, Any]:
        try:
            return super().__call__(data, reader)
        except Exception as error:
            files = ", ".join(str(data[key]) for key in self.key_iterator(dict(data)))
            raise InvalidImageError(f"{files}: {UNREADABLE}: {error_reason(error)}") from error
