"""Deterministic synthetic MRI phantoms: the embedded default dataset for training, tests and demos.

``python -m common.phantoms meningioma --out DIR --num-training N`` (or the ``phantoms`` console script; ``vestibular``
instead of ``meningioma`` for the other family) writes a Decathlon-style dataset; see :mod:`common.phantoms.meningioma`
for the contrast-enhanced T1 meningioma phantom, :mod:`common.phantoms.vestibular` for the high-resolution T2
vestibular schwannoma phantom and :mod:`common.phantoms.geometry` for the shared building blocks.
"""

from common.phantoms.geometry import Acquisition, Phantom
from common.phantoms.meningioma import (
    Lesion,
    MeningiomaPhantomSpec,
    ensure_meningioma_dataset,
    estimate_lesion_volume_ml,
    generate_meningioma_phantom,
    grow_lesion,
    lesion_volumes_ml,
    render_meningioma,
    render_meningioma_growth,
    sample_meningioma_spec,
    write_meningioma_dataset,
)
from common.phantoms.vestibular import (
    Tumour,
    VestibularPhantomSpec,
    ensure_vestibular_dataset,
    estimate_tumour_volume_ml,
    generate_vestibular_phantom,
    render_vestibular,
    sample_vestibular_spec,
    tumour_volume_ml,
    write_vestibular_dataset,
)

__all__ = [
    "Acquisition",
    "Lesion",
    "MeningiomaPhantomSpec",
    "Phantom",
    "Tumour",
    "VestibularPhantomSpec",
    "ensure_meningioma_dataset",
    "ensure_vestibular_dataset",
    "estimate_lesion_volume_ml",
    "estimate_tumour_volume_ml",
    "generate_meningioma_phantom",
    "generate_vestibular_phantom",
    "grow_lesion",
    "lesion_volumes_ml",
    "render_meningioma",
    "render_meningioma_growth",
    "render_vestibular",
    "sample_meningioma_spec",
    "sample_vestibular_spec",
    "tumour_volume_ml",
    "write_meningioma_dataset",
    "write_vestibular_dataset",
]
