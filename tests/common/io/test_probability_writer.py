"""Probability maps written as uint8 with the NIfTI scaling: read back within half a step, much smaller files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage, SaveImage

from common.io.probability_writer import ProbabilityNiftiWriter


def test_probabilities_round_trip_within_half_a_step_and_the_file_is_smaller(tmp_path):
    generator = torch.Generator().manual_seed(0)
    prob = torch.rand(1, 48, 40, 32, generator=generator) ** 6  # mostly near 0, as a tumour map is
    affine = torch.diag(torch.tensor([0.9, 0.8, 1.5, 1.0], dtype=torch.float64))
    image = MetaTensor(prob, affine=affine, meta={"filename_or_obj": str(tmp_path / "case.nii.gz")})
    common = {"output_postfix": "prob", "separate_folder": False, "resample": False, "print_log": False}
    SaveImage(output_dir=tmp_path / "q", writer=ProbabilityNiftiWriter, output_dtype=torch.float32, **common)(image)
    SaveImage(output_dir=tmp_path / "f", output_dtype=torch.float32, **common)(image)
    quantised, full = tmp_path / "q" / "case_prob.nii.gz", tmp_path / "f" / "case_prob.nii.gz"

    stored = nib.load(quantised)
    assert stored.get_data_dtype() == np.uint8
    np.testing.assert_allclose(stored.affine, affine.numpy())
    read = LoadImage(image_only=True)(str(quantised)).numpy()  # MONAI's reader applies the scaling too
    assert np.abs(read - prob[0].numpy()).max() <= 0.5 / 255 + 1e-6
    assert quantised.stat().st_size < full.stat().st_size / 2
