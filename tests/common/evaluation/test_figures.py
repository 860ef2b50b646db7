"""PNG figures: Dice per volume bin, slices with contours, volume over time."""

from __future__ import annotations

import datetime

import nibabel as nib
import numpy as np
import pytest
from matplotlib.image import imread

from common.evaluation.figures import CaseView, case_slices_figure, dice_by_volume_boxplot, volume_over_time


def _has_colour(png, rgb, tolerance=0.12) -> bool:
    pixels = imread(str(png))[..., :3]
    return bool(np.any(np.all(np.abs(pixels - np.asarray(rgb)) < tolerance, axis=-1)))


def test_dice_by_volume_boxplot(tmp_path):
    rng = np.random.default_rng(0)
    volumes, dices = rng.uniform(0.1, 50, 23), rng.uniform(0, 1, 23)
    volumes[0] = 0.0  # no reference tumour: left out
    path = dice_by_volume_boxplot(
        {"AGUNet": (volumes, dices), "AGUNet + flip TTA": (volumes, dices[::-1])}, tmp_path / "fig4.png"
    )
    image = imread(str(path))
    assert image.shape[0] > image.shape[1] / 2  # two panels stacked


def test_case_slices_show_reference_and_prediction_contours(tmp_path):
    affine = np.diag([-1.2, 1.0, 2.5, 1.0])  # LAS, anisotropic
    image = np.random.default_rng(1).normal(100, 5, (60, 50, 24)).astype(np.float32)
    reference = np.zeros(image.shape, np.uint8)
    reference[20:30, 20:30, 10:14] = 1
    prediction = np.roll(reference, 3, axis=0)
    paths = {}
    for name, array in (("image", image), ("label", reference), ("seg", prediction)):
        paths[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(array, affine), str(paths[name]))
    views = [
        CaseView("best", paths["image"], paths["label"], paths["seg"]),
        CaseView("missed", paths["image"], paths["label"], None),
    ]
    png = case_slices_figure(views, tmp_path / "fig5.png", fov_mm=40.0)
    assert _has_colour(png, (0.12, 0.47, 0.71))  # reference contour (tab:blue)
    assert _has_colour(png, (0.84, 0.15, 0.16))  # prediction contour (tab:red)


def test_volume_over_time_skips_absent_values(tmp_path):
    dates = [datetime.date(2024, 1, 10), datetime.date(2024, 7, 1), datetime.date(2025, 2, 1)]
    png = volume_over_time(dates, {"tumour": [2.0, 2.6, 3.9], "L2": [None, 0.3, 0.5]}, tmp_path / "v.png")
    assert _has_colour(png, (0.12, 0.47, 0.71)) and _has_colour(png, (1.0, 0.5, 0.05))


def test_training_curves_of_two_stages_read_from_a_run_folder(tmp_path):
    import json

    from torch.utils.tensorboard import SummaryWriter

    from common.evaluation.figures import concatenate_curves, main, read_training_curves

    stages = []
    for stage, dice in enumerate(([0.1, 0.4], [0.6])):
        run = tmp_path / f"stage{stage}"
        run.mkdir()
        lines = [
            {"epoch": e, "iteration": i, "loss": 1.0 / i} for e in range(1, len(dice) + 1) for i in (2 * e - 1, 2 * e)
        ]
        (run / "train_losses.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
        with SummaryWriter(str(run)) as writer:
            for epoch, value in enumerate(dice, start=1):
                writer.add_scalar("val_mean_dice", value, epoch)
        stages.append(run)
    first = read_training_curves(stages[0])
    assert first["epoch"] == [1.0, 2.0] and first["epoch_loss"] == [0.75, (1 / 3 + 1 / 4) / 2]
    assert first["val_metric"] == pytest.approx([0.1, 0.4])
    joined = concatenate_curves([first, read_training_curves(stages[1])])
    assert joined["val_epoch"] == [1.0, 2.0, 3.0] and joined["iteration"][-1] == 6.0
    main(["--png", str(tmp_path / "curves.png"), *map(str, stages)])
    assert (tmp_path / "curves.png").stat().st_size > 10_000
