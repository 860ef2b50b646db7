"""Deterministic synthetic MRI phantoms: the embedded default dataset for training, tests and demos.

``python -m common.phantoms meningioma --out DIR --num-training N`` (or the ``phantoms`` console script) writes a
Decathlon-style dataset; see :mod:`common.phantoms.meningioma` for the contrast-enhanced T1 meningioma phantom and
:mod:`common.phantoms.geometry` for the shared building blocks.
"""

from common.phantoms.geometry import Acquisition, Phantom
from common.phantoms.meningioma import (
    Lesion,
    MeningiomaPhantomSpec,
    ensure_meningioma_dataset,
    estimate_lesion_volume_ml,
    generate_meningioma_phantom,
    lesion_volumes_ml,
    render_meningioma,
    sample_meningioma_spec,
    write_meningioma_dataset,
)

__all__ = [
    "Acquisition",
    "Lesion",
    "MeningiomaPhantomSpec",
    "Phantom",
    "ensure_meningioma_dataset",
    "estimate_lesion_volume_ml",
    "generate_meningioma_phantom",
    "lesion_volumes_ml",
    "render_meningioma",
    "sample_meningioma_spec",
    "write_meningioma_dataset",
]
