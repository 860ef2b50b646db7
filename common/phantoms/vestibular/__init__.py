"""Synthetic high-resolution T2 (hrT2) phantoms of the posterior fossa with one vestibular schwannoma (VS).

Mirrors :mod:`common.phantoms.meningioma`: :func:`sample_vestibular_spec` draws a :class:`VestibularPhantomSpec` from
``numpy.random.default_rng(seed)`` (anatomy, tissue intensities, the tumour or ``None``, the acquisition, bias and
noise), :func:`render_vestibular` turns it into a :class:`Phantom`, :func:`generate_vestibular_phantom` does both and
:func:`write_vestibular_dataset` / :func:`ensure_vestibular_dataset` write a Decathlon-style dataset.

Anatomy is described in a *head frame* (mm): origin on the midline at the level of the internal auditory canals
(IACs), x to the right, y anterior, z superior; :attr:`Anatomy.center_mm` and :attr:`Anatomy.rotation` place it in
world (RAS) space. In T2 the CSF is the brightest tissue, grey matter is brighter than white matter and bone and air
are dark. Built from analytic shapes (signed distances, painted back to front with a one-voxel partial-volume ramp):

* the head: an ellipsoidal scalp (skin, fat), skull (tables and diploe) and, inside, a CSF rim, cortex and white
  matter, plus a neck below; anterior to the posterior fossa and below the middle / anterior cranial fossa floors the
  skull base and face (bone, soft tissue, sphenoid and maxillary sinuses, nasal cavity and airway, bright eyes);
* the posterior fossa (behind the petrous ridges and clivus, below the tentorium) filled with CSF, in which sit the
  cerebellar hemispheres and vermis (grey cortex with thin bright folia over a white core), the brainstem (midbrain,
  pons, medulla and cord), the fourth ventricle, so that the prepontine, cerebellopontine-angle (CPA) cisterns and the
  cisterna magna stay bright; the spinal canal below the foramen magnum;
* per side a dark petrous bone (a tapered tube running antero-medially), a bright CSF-filled IAC from the CPA cistern
  laterally into it, the cochlea, vestibule and lateral semicircular canal (bright fluid) at its lateral end, the
  facial / vestibulocochlear nerve bundle (dark lines crossing the cistern into the canal), a dark mastoid; dark
  flow voids of the basilar, vertebral and anterior inferior cerebellar arteries; temporal horns in the temporal lobes.

The tumour (absent in about 5 % of cases, or ``no_tumour_probability``) sits on the left or right vestibular nerve:
either intracanalicular (a tapered capsule in the canal, which is widened around it) or at the CPA: an 'ice-cream cone'
made of a cisternal ellipsoid (the scoop, clipped by the petrous bone) and a tapered canalicular extension (the cone)
along the IAC axis. Its volume is drawn log-uniformly in 0.06-7.5 ml (or a narrower range, ``tumour_volume_ml``) and
fitted by quadrature, so rendered volumes fall in 0.05-8 ml; it is intermediate in T2 (brighter than grey matter, much
darker than CSF) with a mild texture and, in some large tumours, small bright cysts; a large scoop pushes the brainstem
a few mm to the other side. The label is the tumour mask.

Acquisitions are axial slabs: slice normal within a few degrees of superior-inferior (a tilt of up to 8 degrees in
some cases), in-plane axes in any order and direction (RAS, LPS, PRS, ...), in-plane spacing 0.4-0.5 mm, slices
1-1.5 mm apart (both times ``spacing_scale``), 20-80 slices at ``spacing_scale=1`` centred near the IAC level and
always containing the whole tumour, a 180-230 mm in-plane field of view; ``max_voxels`` is enforced by redrawing the
in-plane spacing and field of view. A smooth bias field and Rician noise complete the image.

The images are synthetic and not meant for any clinical use.
"""

from common.phantoms.vestibular.dataset import GENERATOR_VERSION, ensure_vestibular_dataset, write_vestibular_dataset
from common.phantoms.vestibular.distances import estimate_tumour_volume_ml, tumour_distance, tumour_points_mm
from common.phantoms.vestibular.rendering import generate_vestibular_phantom, render_vestibular, tumour_volume_ml
from common.phantoms.vestibular.sampling import (
    DEFAULT_MAX_VOXELS,
    INPLANE_SPACING_MM,
    NO_TUMOUR_PROBABILITY,
    SLICE_COUNT_RANGE,
    SLICE_SPACING_MM,
    TARGET_VOLUME_RANGE_ML,
    sample_vestibular_spec,
)
from common.phantoms.vestibular.spec import (
    TUMOUR_VOLUME_RANGE_ML,
    Anatomy,
    Ear,
    Ellipsoid,
    Tissues,
    Tube,
    Tumour,
    VestibularPhantomSpec,
)

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "GENERATOR_VERSION",
    "INPLANE_SPACING_MM",
    "NO_TUMOUR_PROBABILITY",
    "SLICE_COUNT_RANGE",
    "SLICE_SPACING_MM",
    "TARGET_VOLUME_RANGE_ML",
    "TUMOUR_VOLUME_RANGE_ML",
    "Anatomy",
    "Ear",
    "Ellipsoid",
    "Tissues",
    "Tube",
    "Tumour",
    "VestibularPhantomSpec",
    "ensure_vestibular_dataset",
    "estimate_tumour_volume_ml",
    "generate_vestibular_phantom",
    "render_vestibular",
    "sample_vestibular_spec",
    "tumour_distance",
    "tumour_points_mm",
    "tumour_volume_ml",
    "write_vestibular_dataset",
]
