"""Fixtures for bundle tests: tiny phantom datasets."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def meningioma_phantoms(tmp_path_factory) -> Path:
    """Six tiny meningioma phantoms (5 training, 1 test) at four times the usual voxel size."""
    from common.phantoms import write_meningioma_dataset

    root = tmp_path_factory.mktemp("meningioma_phantoms")
    write_meningioma_dataset(root, num_training=5, num_test=1, seed=7, spacing_scale=4.0)
    return root


@pytest.fixture(scope="session")
def vestibular_phantoms(tmp_path_factory) -> Path:
    """Six tiny vestibular schwannoma phantoms (5 training, 1 test) at four times the usual voxel size."""
    from common.phantoms import write_vestibular_dataset

    root = tmp_path_factory.mktemp("vestibular_phantoms")
    write_vestibular_dataset(root, num_training=5, num_test=1, seed=11, spacing_scale=4.0)
    return root
