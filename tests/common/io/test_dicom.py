"""A DICOM series written by common.io.dicom loads back through MONAI/ITK with the same voxels and geometry."""

import numpy as np
from monai.transforms import LoadImage

from common.io.dicom import write_dicom_series


def test_oblique_anisotropic_series_round_trip(tmp_path):
    volume = np.random.default_rng(0).integers(0, 1000, size=(14, 11, 6)).astype(np.float32)
    angle = np.deg2rad(10)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.9, 2.5])
    affine[:3, 3] = [-40.0, 12.0, 30.0]
    folder = write_dicom_series(volume, affine, tmp_path / "series")
    assert len(list(folder.glob("*.dcm"))) == 6
    loaded = LoadImage(image_only=True, ensure_channel_first=True)(str(folder))
    np.testing.assert_allclose(loaded.affine.numpy(), affine, atol=1e-3)
    np.testing.assert_array_equal(loaded[0].numpy(), volume)
