"""The synthetic patient is a phantom head on exactly the requested grid and orientation."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from common.benchmarking.synthetic import random_input, write_synthetic_volume


def test_synthetic_volume_has_the_requested_grid(tmp_path):
    info = write_synthetic_volume(
        tmp_path / "v.nii.gz", "meningioma", (40, 36, 30), (5.0, 5.0, 6.0), label_path=tmp_path / "l.nii.gz"
    )
    image = nib.load(tmp_path / "v.nii.gz")
    assert image.shape == (40, 36, 30)
    assert np.allclose(np.linalg.norm(image.affine[:3, :3], axis=0), [5.0, 5.0, 6.0])
    assert "".join(nib.aff2axcodes(image.affine)) == "LPS"
    assert info["shape"] == [40, 36, 30] and nib.load(tmp_path / "l.nii.gz").shape == (40, 36, 30)
    data = np.asarray(image.dataobj)
    assert data.max() > 0 and data[0, 0, 0] < 0.1 * data.max()  # a head in air


def test_random_input_is_reproducible():
    first = random_input((8, 6, 4), batch_size=2)
    assert first.shape == (2, 1, 8, 6, 4) and float(first.min()) >= 0 and float(first.max()) <= 1
    assert (random_input((8, 6, 4), batch_size=2) == first).all()
