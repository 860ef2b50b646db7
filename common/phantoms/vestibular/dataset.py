"""Decathlon-style datasets of vestibular phantoms, written once and reused."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.phantoms.geometry import (
    Phantom,
    PhantomDataset,
    ensure_phantom_dataset,
    write_phantom_dataset,
)
from common.phantoms.vestibular.distances import estimate_tumour_volume_ml
from common.phantoms.vestibular.rendering import generate_vestibular_phantom
from common.phantoms.vestibular.sampling import (
    DEFAULT_MAX_VOXELS,
    NO_TUMOUR_PROBABILITY,
    TARGET_VOLUME_RANGE_ML,
    check_tumour_mix,
)
from common.phantoms.vestibular.spec import VestibularPhantomSpec

__all__ = ["GENERATOR_VERSION", "ensure_vestibular_dataset", "write_vestibular_dataset"]

GENERATOR_VERSION = 1
"""Bumped whenever the same seed and parameters would give different files; recorded in ``phantoms.json``."""


def _summarise(phantom: Phantom) -> dict[str, Any]:
    """Per-case facts recorded in ``phantoms.json``."""
    spec: VestibularPhantomSpec = phantom.spec
    tumour = spec.tumour
    return {
        "tumour": tumour is not None,
        "side": None if tumour is None else ("left" if tumour.side < 0 else "right"),
        "location": None if tumour is None else tumour.location,
        "ice_cream_cone": tumour is not None and tumour.ice_cream_cone,
        "tumour_volume_ml": 0.0 if tumour is None else round(estimate_tumour_volume_ml(spec.anatomy, tumour), 4),
        "label_volume_ml": round(int(np.count_nonzero(phantom.label)) * spec.acquisition.voxel_volume_ml, 4),
    }


def _vestibular_dataset(
    spacing_scale: float, max_voxels: float, no_tumour_probability: float, tumour_volume_ml: Sequence[float]
) -> PhantomDataset:
    """The vestibular schwannoma phantom family as a :class:`PhantomDataset`.

    The tumour mix is recorded in the parameters only where it is not the default, so that datasets made before it
    existed keep their identity (and are not regenerated).
    """
    if spacing_scale <= 0 or max_voxels <= 0:
        raise ValueError(f"spacing_scale and max_voxels must be positive, got {spacing_scale} and {max_voxels}.")
    check_tumour_mix(no_tumour_probability, tumour_volume_ml)
    volume_range = (float(tumour_volume_ml[0]), float(tumour_volume_ml[1]))
    mix: dict[str, Any] = {}
    if no_tumour_probability != NO_TUMOUR_PROBABILITY:
        mix["no_tumour_probability"] = float(no_tumour_probability)
    if volume_range != TARGET_VOLUME_RANGE_ML:
        mix["tumour_volume_ml"] = list(volume_range)
    return PhantomDataset(
        name="VestibularSchwannomaPhantoms",
        description=(
            "Synthetic high-resolution T2 posterior fossa phantoms with one vestibular schwannoma (intracanalicular "
            "or cerebellopontine angle, about 5 % of cases without), generated deterministically by common.phantoms. "
            "Not patient data; not for clinical use."
        ),
        modality={"0": "hrT2"},
        labels={"0": "background", "1": "schwannoma"},
        case_prefix="vs",
        generate=functools.partial(
            generate_vestibular_phantom,
            spacing_scale=spacing_scale,
            max_voxels=max_voxels,
            no_tumour_probability=no_tumour_probability,
            tumour_volume_ml=volume_range,
        ),
        summarise=_summarise,
        parameters={
            "generator": "vestibular",
            "generator_version": GENERATOR_VERSION,
            "spacing_scale": float(spacing_scale),
            "max_voxels": float(max_voxels),
            **mix,
        },
    )


def write_vestibular_dataset(
    root: str | Path,
    num_training: int,
    num_test: int = 0,
    seed: int = 0,
    spacing_scale: float = 1.0,
    max_voxels: float = DEFAULT_MAX_VOXELS,
    no_tumour_probability: float = NO_TUMOUR_PROBABILITY,
    tumour_volume_ml: Sequence[float] = TARGET_VOLUME_RANGE_ML,
) -> Path:
    """Writes a Decathlon-style VS phantom dataset (see :func:`common.phantoms.geometry.write_phantom_dataset`).

    Args:
        root: Output folder; must be new, empty or a previous phantom dataset (never a folder with foreign files).
        num_training: Number of training cases (``imagesTr``/``labelsTr``).
        num_test: Number of test cases (``imagesTs``/``labelsTs``, labels included).
        seed: Base seed; case ``i`` of a section uses a seed derived from ``(seed, section, i)``.
        spacing_scale: Factor on the voxel spacing (> 1 for small test volumes).
        max_voxels: Upper bound on the voxels of a case.
        no_tumour_probability: Probability that a case has no tumour.
        tumour_volume_ml: ``(low, high)`` range of the tumour volumes, drawn log-uniformly (see
            :func:`sample_vestibular_spec`); e.g. ``(0.06, 0.15)`` for a set of tiny tumours.

    Returns:
        Path of ``dataset.json``.
    """
    dataset = _vestibular_dataset(spacing_scale, max_voxels, no_tumour_probability, tumour_volume_ml)
    return write_phantom_dataset(root, dataset, num_training, num_test, seed)


def ensure_vestibular_dataset(
    root: str | Path,
    num_training: int,
    num_test: int = 0,
    seed: int = 0,
    spacing_scale: float = 1.0,
    max_voxels: float = DEFAULT_MAX_VOXELS,
    no_tumour_probability: float = NO_TUMOUR_PROBABILITY,
    tumour_volume_ml: Sequence[float] = TARGET_VOLUME_RANGE_ML,
) -> str:
    """Generates the VS phantom dataset in ``root`` unless it is already there with the same parameters.

    Meant for MONAI bundle configs, e.g. ``"$common.phantoms.ensure_vestibular_dataset(@dataset_dir, 40, 8)"``.
    Arguments as :func:`write_vestibular_dataset`.

    Returns:
        ``str(root)``.
    """
    dataset = _vestibular_dataset(spacing_scale, max_voxels, no_tumour_probability, tumour_volume_ml)
    return ensure_phantom_dataset(root, dataset, num_training, num_test, seed)
