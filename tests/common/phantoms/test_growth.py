"""A synthetic patient scanned twice: the same meningioma phantom with one lesion grown."""

from __future__ import annotations

import numpy as np
import pytest

from common.phantoms import grow_lesion, lesion_volumes_ml, render_meningioma_growth, sample_meningioma_spec


def test_grown_lesion_is_the_only_change():
    spec = sample_meningioma_spec(3, spacing_scale=5.0)  # one 15.7 ml lesion
    before, after = render_meningioma_growth(spec, 2.0)
    assert after.label.sum() > before.label.sum()
    assert np.all(after.label >= before.label)  # scaled about its centre: it only grows
    np.testing.assert_array_equal(before.affine, after.affine)
    changed = ~np.isclose(before.image, after.image)
    assert changed.any() and changed[after.label == 0].mean() < 0.01  # the rest is unchanged (but the lesion rim)
    volumes = lesion_volumes_ml(grow_lesion(spec, 2.0))[0] / lesion_volumes_ml(spec)[0]
    assert 1.4 < volumes <= 2.05  # partly clipped by the skull
    np.testing.assert_array_equal(spec.lesions[0].semi_axes_mm, sample_meningioma_spec(3, 5.0).lesions[0].semi_axes_mm)


def test_grow_lesion_checks_its_arguments():
    spec = sample_meningioma_spec(3, spacing_scale=5.0)
    with pytest.raises(ValueError, match="no lesion 1"):
        grow_lesion(spec, 1.5, index=1)
    with pytest.raises(ValueError, match="positive"):
        grow_lesion(spec, 0.0)
