"""Coarse-to-fine inference: find the tumour on a coarse grid, then run the SpvPA network only around it.

Wang et al. 2019 crop a 100 x 50 x 50 mm box around the tumour by hand. A vestibular schwannoma fills well under
0.1 % of a whole hrT2 scan, so sliding the fine network over the whole volume spends almost all of its time on
background. :class:`CoarseToFineInferer` replaces the hand-placed box:

1. the preprocessed scan (``spacing`` mm) is resampled to the localiser's coarse grid (``localiser_spacing`` mm,
   padded to a multiple of ``localiser_divisor``) and a small 3D U-Net (the *localiser*, trained on whole scans at that
   spacing) predicts the tumour probability;
2. each connected region of coarse probability above ``threshold`` is a candidate, scored by its peak probability; the
   ``max_candidates`` best are kept. When none reaches the threshold (the localiser is unsure, or there is no
   tumour), the most probable voxel of each side (left and right half along ``lateral_axis``) is a candidate, so both
   internal auditory canals are looked at;
3. the fine inferer (the bundle's sliding window, flips and ensembles included) segments a box of ``roi_size``
   voxels centred on each candidate (moved inside the scan where needed), and the foreground probabilities of the
   boxes are merged by their maximum; outside the boxes the probability is 0;
4. with ``gate_margin_mm`` set, the fine probability is also kept only where the localiser's region (coarse
   probability above ``threshold``), grown by that margin, lies: the box holds other bright structures of the
   cerebellopontine angle that the fine network alone may take for tumour. A fallback box (no region found) is not
   gated.

It returns log-probabilities (``softmax(log p) = p``), as :class:`common.inference.inferers.EnsembleFlipInferer` does,
so the bundle's postprocessing needs no change. :attr:`CoarseToFineInferer.last_candidates` holds what the localiser
found for each case of the last call (box in voxels and world mm, centre, score, whether it came from the fallback); the
inference config puts it in the JSON report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import Inferer, SimpleInferer
from scipy import ndimage

__all__ = ["Candidate", "CoarseToFineInferer", "find_candidates"]


@dataclass(frozen=True)
class Candidate:
    """One box the fine network segments.

    Attributes:
        score: peak tumour probability of the localiser in the candidate region (or at the voxel, for a fallback).
        centre_voxel: centre on the preprocessed (fine) grid, voxel indices.
        box_voxels: ``[[start, stop], ...]`` per spatial axis on the preprocessed grid.
        centre_mm: centre in world mm (RAS, the preprocessed grid's affine); ``None`` without an affine.
        fallback: True when no region reached the threshold and this is the most probable voxel of one side.
    """

    score: float
    centre_voxel: list[float]
    box_voxels: list[list[int]]
    centre_mm: list[float] | None
    fallback: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_candidates(
    prob: np.ndarray, threshold: float, max_candidates: int, lateral_axis: int = 0
) -> list[tuple[float, np.ndarray, bool]]:
    """Candidate tumour locations on the coarse probability map ``prob`` (H, W, D).

    Returns:
        ``(score, centre, fallback)`` triples, best first: the probability-weighted centroids of the connected regions
        above ``threshold`` scored by their peak (at most ``max_candidates``), or, when there is none, the most
        probable voxel of each half along ``lateral_axis`` (``fallback`` True).
    """
    regions, count = ndimage.label(prob >= threshold, structure=np.ones((3, 3, 3), dtype=bool))
    if count:
        index = np.arange(1, count + 1)
        peaks = ndimage.maximum(prob, regions, index)
        centres = ndimage.center_of_mass(prob, regions, index)
        order = np.argsort(-np.asarray(peaks), kind="stable")[:max_candidates]
        return [(float(peaks[i]), np.asarray(centres[i]), False) for i in order]
    found = []
    middle = prob.shape[lateral_axis] // 2
    for side in (slice(0, middle), slice(middle, None)):
        view = [slice(None)] * 3
        view[lateral_axis] = side
        half = prob[tuple(view)]
        if half.size == 0:
            continue
        peak = np.asarray(np.unravel_index(int(np.argmax(half)), half.shape), dtype=np.float64)
        peak[lateral_axis] += side.start
        found.append((float(half.max()), peak, True))
    return sorted(found, key=lambda item: -item[0])


def _box(centre: np.ndarray, roi_size: Sequence[int], shape: Sequence[int]) -> list[list[int]]:
    """``roi_size`` box centred on ``centre``, moved inside ``shape`` (the whole axis when the scan is smaller)."""
    box = []
    for c, size, extent in zip(centre, roi_size, shape):
        size = min(int(size), int(extent))
        start = min(max(0, round(float(c) - size / 2)), extent - size)
        box.append([int(start), int(start + size)])
    return box


class CoarseToFineInferer(Inferer):
    """Localise on a coarse grid, then segment boxes around the candidates (see the module docstring).

    Args:
        localiser: the coarse 3D network (2 output channels: background, tumour).
        roi_size: box size in voxels of the preprocessed grid (the SpvPA patch, 100 x 50 x 50 mm).
        spacing: voxel spacing of the preprocessed grid (mm per spatial axis).
        localiser_spacing: voxel spacing the localiser was trained at.
        inferer: runs the fine network on one box. Defaults to ``SimpleInferer()``.
        localiser_inferer: runs the localiser (e.g. a :class:`common.inference.precision.PrecisionInferer`). Defaults to
            ``SimpleInferer()``.
        threshold: coarse probability above which a region is a candidate.
        max_candidates: most boxes per case when candidates are found.
        localiser_divisor: the coarse grid is padded to a multiple of this (the localiser's total down-sampling).
        lateral_axis: left-right spatial axis of the preprocessed grid (0 after ``Orientationd(axcodes="RAS")``).
        gate_margin_mm: keep the fine probability only within this margin of the localiser's region (step 4 of the
            module docstring); ``None`` keeps the whole box.
    """

    def __init__(
        self,
        localiser: torch.nn.Module,
        roi_size: Sequence[int],
        spacing: Sequence[float],
        localiser_spacing: Sequence[float],
        inferer: Inferer | None = None,
        localiser_inferer: Inferer | None = None,
        threshold: float = 0.5,
        max_candidates: int = 2,
        localiser_divisor: int = 16,
        lateral_axis: int = 0,
        gate_margin_mm: float | None = None,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be at least 1, got {max_candidates}.")
        self.localiser = localiser
        self.roi_size = [int(s) for s in roi_size]
        self.scale = [float(s) / float(c) for s, c in zip(spacing, localiser_spacing)]
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.localiser_inferer = localiser_inferer if localiser_inferer is not None else SimpleInferer()
        self.threshold = float(threshold)
        self.max_candidates = int(max_candidates)
        self.divisor = int(localiser_divisor)
        self.lateral_axis = int(lateral_axis)
        self.gate_radius = (
            None
            if gate_margin_mm is None
            else [max(0, math.ceil(float(gate_margin_mm) / float(c))) for c in localiser_spacing]
        )
        self.last_candidates: list[list[Candidate]] = []
        self.last_affines: list[list[list[float]] | None] = []

    def coarse_probability(self, image: torch.Tensor) -> torch.Tensor:
        """Tumour probability of the localiser for one (1, C, H, W, D) image, on the coarse grid (H', W', D')."""
        size = [max(1, round(s * f)) for s, f in zip(image.shape[2:], self.scale)]
        coarse = F.interpolate(torch.as_tensor(image).float(), size=size, mode="trilinear", align_corners=False)
        padded = [math.ceil(s / self.divisor) * self.divisor for s in size]
        pad = [p for s, t in zip(reversed(size), reversed(padded)) for p in (0, t - s)]
        self.localiser.eval()
        with torch.no_grad():
            logits = self.localiser_inferer(F.pad(coarse, pad), self.localiser)
        prob = torch.softmax(logits.float(), dim=1)[0, 1]
        return prob[: size[0], : size[1], : size[2]]

    def localise(self, image: torch.Tensor, affine: np.ndarray | None = None) -> list[Candidate]:
        """The candidate boxes for one (1, C, H, W, D) preprocessed image."""
        return self._candidates(self.coarse_probability(image), image.shape[2:], affine)

    def _candidates(self, coarse: torch.Tensor, shape: Sequence[int], affine: np.ndarray | None) -> list[Candidate]:
        """The candidate boxes on the fine grid of ``shape`` from the coarse probability map."""
        prob = coarse.cpu().numpy()
        candidates = []
        for score, centre, fallback in find_candidates(prob, self.threshold, self.max_candidates, self.lateral_axis):
            fine = [(c + 0.5) / f - 0.5 for c, f in zip(centre, self.scale)]  # coarse voxel centre -> fine voxel
            world = None if affine is None else [float(v) for v in affine[:3, :3] @ np.asarray(fine) + affine[:3, 3]]
            candidates.append(
                Candidate(
                    score=round(score, 4),
                    centre_voxel=[round(float(v), 2) for v in fine],
                    box_voxels=_box(np.asarray(fine), self.roi_size, shape),
                    centre_mm=None if world is None else [round(v, 2) for v in world],
                    fallback=fallback,
                )
            )
        return candidates

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        affines = getattr(inputs, "affine", None)
        if affines is not None and affines.ndim == 2:
            affines = affines[None]
        foreground = torch.zeros((inputs.shape[0], 1, *inputs.shape[2:]), dtype=torch.float32, device=inputs.device)
        self.last_candidates, self.last_affines = [], []
        for b in range(inputs.shape[0]):
            image = inputs[b : b + 1]
            affine = None if affines is None else np.asarray(affines[b].cpu(), dtype=np.float64)
            coarse = self.coarse_probability(image)
            candidates = self._candidates(coarse, image.shape[2:], affine)
            self.last_candidates.append(candidates)
            self.last_affines.append(None if affine is None else affine.tolist())
            gate = self._gate(coarse, image.shape[2:]) if self.gate_radius is not None else None
            for candidate in candidates:
                box = (slice(None), slice(None), *(slice(start, stop) for start, stop in candidate.box_voxels))
                logits = self.inferer(image[box], network, *args, **kwargs)
                prob = torch.softmax(torch.as_tensor(logits).float(), dim=1)[:, 1:]
                if gate is not None and not candidate.fallback:
                    prob = prob * gate[box].to(prob.device)
                target = foreground[b : b + 1][box]
                target.copy_(torch.maximum(target, prob))
        foreground = foreground.clamp(0.0, 1.0)
        tiny = torch.finfo(torch.float32).tiny
        return torch.log(torch.cat([1.0 - foreground, foreground], dim=1).clamp_min(tiny))

    def _gate(self, coarse: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """(1, 1, *shape) mask of the coarse region above the threshold, grown by the margin, on the fine grid."""
        assert self.gate_radius is not None
        region = (coarse >= self.threshold).float()[None, None]
        kernel = [2 * r + 1 for r in self.gate_radius]
        grown = F.max_pool3d(region, kernel_size=kernel, stride=1, padding=self.gate_radius)
        return F.interpolate(grown, size=list(shape), mode="nearest")

    def report(self) -> dict[str, Any]:
        """What the localiser found in the last case: ``{"localisation": {...}}`` for the JSON report.

        ``grid_affine`` is the voxel-to-world (RAS mm) affine of the preprocessed grid that ``box_voxels`` index.
        """
        candidates = self.last_candidates[-1] if self.last_candidates else []
        return {
            "localisation": {
                "threshold": self.threshold,
                "fallback_both_sides": any(c.fallback for c in candidates),
                "boxes": [c.to_dict() for c in candidates],
                "grid_affine": self.last_affines[-1] if self.last_affines else None,
            }
        }
