"""Additive attention gate (Oktay et al. 2018) as used in the AGUNet decoder (Bouget et al. 2021, §2.3.1)."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import Tensor, nn

__all__ = ["AttentionGate"]

_MODES = ("concat", "sum")


class AttentionGate(nn.Module):
    """Attention gate that re-weights skip-connection features with a gating signal.

    Bouget et al. 2021, §2.3.1, following Oktay et al. 2018 ("Attention U-Net: Learning Where to Look for the
    Pancreas"). With ``g`` the gating signal and ``x`` the skip features::

        psi_in = ReLU(cat[BN(W_g g), BN(W_x x)])   # mode "concat" (authors' Keras code, default)
        psi_in = ReLU(BN(W_g g) + BN(W_x x))       # mode "sum" (Oktay et al. 2018)
        psi    = Sigmoid(BN(W_psi psi_in))         # one coefficient per voxel, in (0, 1)
        output = x * psi

    where ``W_g``, ``W_x`` and ``W_psi`` are 1x1(x1) convolutions with bias. Differences from Oktay et al.: the
    authors concatenate instead of summing the two projections (``mode="concat"``), and ``g`` is the *already
    upsampled* decoder feature map, so ``g`` and ``x`` share the same grid; Oktay et al. gate from the coarser grid
    (stride-2 ``W_x`` and a resampled ``psi``).

    Args:
        spatial_dims: number of spatial dimensions (1, 2 or 3).
        gate_channels: channels of the gating signal ``g``.
        skip_channels: channels of the skip features ``x``.
        inter_channels: channels of each projection ``W_g g`` and ``W_x x``; ``None`` gives ``gate_channels // 2``
            as in the authors' code.
        mode: ``"concat"`` or ``"sum"``, how the two projections are merged (see above).

    Shape:
        - ``g``: ``(B, gate_channels, *spatial)``.
        - ``x``: ``(B, skip_channels, *spatial)``, the same spatial size as ``g``.
        - Output: ``(B, skip_channels, *spatial)``.

    Raises:
        ValueError: if ``mode`` is unknown or a channel count is not positive.
    """

    def __init__(
        self,
        spatial_dims: int,
        gate_channels: int,
        skip_channels: int,
        inter_channels: int | None = None,
        mode: str = "concat",
    ) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
        inter = gate_channels // 2 if inter_channels is None else inter_channels
        if min(gate_channels, skip_channels, inter) < 1:
            raise ValueError(
                f"channel counts must be positive, got gate_channels={gate_channels}, skip_channels={skip_channels}, "
                f"inter_channels={inter} (give inter_channels explicitly when gate_channels < 2)."
            )
        self.concat = mode == "concat"
        self.w_gate = Convolution(spatial_dims, gate_channels, inter, kernel_size=1, act=None, norm="BATCH")
        self.w_skip = Convolution(spatial_dims, skip_channels, inter, kernel_size=1, act=None, norm="BATCH")
        self.relu = nn.ReLU()
        self.psi = Convolution(
            spatial_dims,
            2 * inter if self.concat else inter,
            1,
            kernel_size=1,
            adn_ordering="NA",
            act="SIGMOID",
            norm="BATCH",
        )

    def coefficients(self, g: Tensor, x: Tensor) -> Tensor:
        """Attention coefficients ``psi`` in (0, 1), shape ``(B, 1, *spatial)``."""
        if g.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"gate and skip must share the same spatial size, got {g.shape[2:]} and {x.shape[2:]}; upsample the "
                "gating signal first."
            )
        projected_gate = self.w_gate(g)
        projected_skip = self.w_skip(x)
        if self.concat:
            merged = torch.cat([projected_gate, projected_skip], dim=1)
        else:
            merged = projected_gate + projected_skip
        return self.psi(self.relu(merged))

    def forward(self, g: Tensor, x: Tensor) -> Tensor:
        """Gate the skip features ``x`` with the gating signal ``g``; returns ``x * psi``."""
        return x * self.coefficients(g, x)
