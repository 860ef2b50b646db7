"""2.5D U-Net with (supervised) spatial attention of Wang et al. 2019, §2 and Table 1, with its 2D and 3D variants."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from common.attention import AttentionGate, SpatialAttention
from common.blocks import ConvBlock

__all__ = ["ATTENTIONS", "DIMS", "VARIANTS", "SpvPAUNet"]

DIMS = ("2d", "2.5d", "3d")
"""Convolution layouts: 2D (in-plane) everywhere, 2D then 3D (the paper's 2.5D), 3D everywhere."""

ATTENTIONS = ("none", "gate", "pa", "spvpa")
"""Attention choices: none, Oktay et al. attention gates ("AG"), the paper's attention ("PA") and the same
network whose attention maps are supervised ("SpvPA")."""

VARIANTS: dict[str, dict[str, Any]] = {
    "2D U-Net": {"dims": "2d", "attention": "none"},
    "3D U-Net": {"dims": "3d", "attention": "none"},
    "2.5D U-Net": {"dims": "2.5d", "attention": "none"},
    "2.5D U-Net + AG": {"dims": "2.5d", "attention": "gate"},
    "2.5D U-Net + PA": {"dims": "2.5d", "attention": "pa"},
    "2.5D U-Net + SpvPA": {"dims": "2.5d", "attention": "spvpa"},
}
"""Table 1 rows (Wang et al. 2019) -> :class:`SpvPAUNet` keyword arguments (all other arguments at their defaults)."""

_IN_PLANE_KERNEL = (3, 3, 1)
_VOLUME_KERNEL = (3, 3, 3)
_IN_PLANE_POOL = (2, 2, 1)
_VOLUME_POOL = (2, 2, 2)


class _EncoderLevel(nn.Module):
    """Encoder level: a :class:`ConvBlock` (BN + PReLU) then max-pooling; returns ``(skip, pooled)``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: tuple[int, ...], pool: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.conv = ConvBlock(3, in_channels, out_channels, kernel_size, act="PRELU", norm="BATCH")
        self.pool = nn.MaxPool3d(kernel_size=pool, stride=pool)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        skip = self.conv(x)
        return skip, self.pool(skip)


class _DecoderLevel(nn.Module):
    """Decoder level ``l``: ``up = ConvTranspose(x)``, optional attention gate on the skip, ``m = cat[skip, up]``,
    optional spatial attention on ``m``, then a :class:`ConvBlock` (BN + PReLU). Returns ``(features, A_l or None)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, ...],
        pool: tuple[int, ...],
        attention: str,
        attention_kernel_size: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(in_channels, out_channels, kernel_size=pool, stride=pool)
        self.gate: nn.Module | None = None
        if attention == "gate":
            self.gate = AttentionGate(3, out_channels, out_channels, out_channels // 2, mode="sum")
        self.attention: nn.Module | None = None
        if attention in ("pa", "spvpa"):
            self.attention = SpatialAttention(3, 2 * out_channels, out_channels // 2, attention_kernel_size)
        self.conv = ConvBlock(3, 2 * out_channels, out_channels, kernel_size, act="PRELU", norm="BATCH")

    def forward(self, x: Tensor, skip: Tensor) -> tuple[Tensor, Tensor | None]:
        up = self.up(x)
        if self.gate is not None:
            skip = self.gate(up, skip)
        merged = torch.cat([skip, up], dim=1)
        attention_map: Tensor | None = None
        if self.attention is not None:
            merged, attention_map = self.attention(merged)
        return self.conv(merged), attention_map


class SpvPAUNet(nn.Module):
    """U-Net of Wang et al. 2019 ("Automatic Segmentation of Vestibular Schwannoma from T2-Weighted MRI by Deep
    Spatial Attention with Hardness-Weighted Loss", §2, Fig. 2) and the networks it is compared with in Table 1.

    Levels ``l = 1..levels`` (5 in the paper) have ``N_l = base_channels * l`` channels (``16 l``: 16, 32, 48, 64,
    80). Each level block is a :class:`ConvBlock`: two ``conv -> BN -> PReLU`` units (one shared PReLU slope per
    unit, PyTorch's default). Encoder levels ``1..levels-1`` are followed by max-pooling; level ``levels`` is the
    bottleneck. The decoder is symmetric: for ``l = levels-1 .. 1``, ``up`` is a transposed convolution
    ``N_{l+1} -> N_l`` with kernel = stride = the pooling factor below level ``l`` (with bias, no normalisation or
    activation: the following block normalises), ``cat[skip_l, up]`` (``2 N_l`` channels) feeds the block of the
    level's kernel. The head is a 1x1x1 convolution producing logits (no softmax).

    Convolution layout (``dims``); the slice (through-plane) axis is the *last* spatial axis, as for an axial
    acquisition after RAS/LPS orientation:
        - ``"2.5d"`` (the paper): levels ``1..num_2d_levels`` (L1-L2 in the paper) use in-plane 3x3x1 convolutions
          and 2x2x1 max-pooling, the other levels (L3-L5, bottleneck included) 3x3x3 convolutions and 2x2x2 pooling.
        - ``"2d"`` (Table 1 "2D U-Net"): 3x3x1 convolutions and 2x2x1 pooling at every level, i.e. a slice-wise 2D
          U-Net applied to a whole volume (BN statistics are shared across slices).
        - ``"3d"`` (Table 1 "3D U-Net"): 3x3x3 convolutions and 2x2x2 pooling at every level.

    Attention (``attention``):
        - ``"none"``: plain U-Net.
        - ``"gate"`` (Table 1 "+AG"): an Oktay et al. 2018 :class:`AttentionGate` (additive, ``mode="sum"``,
          ``N_l // 2`` intermediate channels) gates ``skip_l`` with ``up`` before the concatenation.
        - ``"pa"`` and ``"spvpa"`` (Table 1 "+PA" and "+SpvPA"): a residual :class:`SpatialAttention`
          (``y = x (1 + A_l)``, ``N_l // 2`` intermediate channels) on ``cat[skip_l, up]`` at every decoder level,
          and also on the bottleneck output (``N_L`` input channels) before its upsampling. This gives ``levels``
          attention maps, one per resolution level, which is the ``L = 5`` of the attention loss (Eq. 1); the paper
          says "each level of the decoder", and we count the bottleneck as the decoder's coarsest level. The two
          names build the *same* network: the supervision of the maps is a loss choice (Eq. 1), made by the training
          configuration; both names exist so that a configuration can pass the Table 1 row straight through.
          ``attention_kernel_size`` ``k`` is applied as ``(k, k, 1)`` at in-plane (2D) levels and ``(k, k, k)`` at
          3D levels, like the level's convolutions.

    Args:
        in_channels: number of input channels (1: hrT2).
        out_channels: number of output channels (classes, background included).
        base_channels: ``N_1``; level ``l`` has ``base_channels * l`` channels (16 in the paper).
        levels: number of resolution levels, bottleneck included (5 in the paper); ``levels - 1`` poolings.
        dims: ``"2d"``, ``"2.5d"`` or ``"3d"`` (see above).
        attention: ``"none"``, ``"gate"``, ``"pa"`` or ``"spvpa"`` (see above).
        attention_kernel_size: odd kernel size of the two convolutions of the spatial attention module (not given in
            the paper; 1 by default); only used with ``"pa"`` and ``"spvpa"``.
        num_2d_levels: number of finest levels with in-plane convolutions and pooling for ``dims="2.5d"`` (2 in the
            paper), in ``[0, levels - 1]``; ignored for ``"2d"`` and ``"3d"``.

    Shape:
        - Input: ``(B, in_channels, H, W, D)`` with ``D`` the slice axis; ``H`` and ``W`` divisible by
          ``2 ** (levels - 1)``, ``D`` by ``2 ** (number of 2x2x2 poolings)`` (see :attr:`divisors`).
        - Output, evaluation mode (and training with ``"none"`` or ``"gate"``): logits ``(B, out_channels, H, W, D)``.
        - Output, training mode with ``"pa"`` or ``"spvpa"``: a tuple ``(logits, [A_1, ..., A_L])`` with the attention
          maps finest first (``A_1`` on the full grid, ``A_L`` on the bottleneck grid), each ``(B, 1, h_l, w_l, d_l)``
          with values in (0, 1).

    The module can be compiled with :func:`torch.jit.script` (the return annotation is the union of both outputs;
    a scripted module in evaluation mode returns the logits tensor).

    Raises:
        ValueError: on invalid arguments (constructor) or an input of the wrong rank or size (forward).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        base_channels: int = 16,
        levels: int = 5,
        dims: str = "2.5d",
        attention: str = "spvpa",
        attention_kernel_size: int = 1,
        num_2d_levels: int = 2,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be positive, got {in_channels} and {out_channels}.")
        if dims not in DIMS:
            raise ValueError(f"dims must be one of {DIMS}, got {dims!r}.")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}.")
        if levels < 2:
            raise ValueError(f"levels must be >= 2 (at least one pooling and a bottleneck), got {levels}.")
        if not 0 <= num_2d_levels <= levels - 1:
            raise ValueError(f"num_2d_levels must be in [0, levels - 1] = [0, {levels - 1}], got {num_2d_levels}.")
        if base_channels < 1:
            raise ValueError(f"base_channels must be positive, got {base_channels}.")
        if attention != "none" and base_channels < 2:
            raise ValueError(
                f"attention={attention!r} needs base_channels >= 2 (attention modules use N_l // 2 channels), "
                f"got {base_channels}."
            )
        if attention_kernel_size < 1 or attention_kernel_size % 2 == 0:
            raise ValueError(
                f"attention_kernel_size must be positive and odd for 'same' padding, got {attention_kernel_size}."
            )

        self.dims = dims
        self.attention_type = attention
        self.levels = levels
        self.return_attention_maps = attention in ("pa", "spvpa")
        in_plane = [dims == "2d" or (dims == "2.5d" and level < num_2d_levels) for level in range(levels)]
        self.level_kernels = [_IN_PLANE_KERNEL if flat else _VOLUME_KERNEL for flat in in_plane]
        pools = [_IN_PLANE_POOL if flat else _VOLUME_POOL for flat in in_plane[:-1]]
        volume_pools = sum(1 for pool in pools if pool == _VOLUME_POOL)
        # required multiple of each spatial size (H, W, D)
        self.divisors = [2 ** (levels - 1), 2 ** (levels - 1), 2**volume_pools]
        attention_kernels = [
            (attention_kernel_size, attention_kernel_size, 1 if flat else attention_kernel_size) for flat in in_plane
        ]
        channels = [base_channels * (level + 1) for level in range(levels)]

        self.encoder = nn.ModuleList()
        previous = in_channels
        for level in range(levels - 1):
            self.encoder.append(_EncoderLevel(previous, channels[level], self.level_kernels[level], pools[level]))
            previous = channels[level]
        self.bottleneck = ConvBlock(3, previous, channels[-1], self.level_kernels[-1], act="PRELU", norm="BATCH")
        self.bottleneck_attention: nn.Module | None = None
        if self.return_attention_maps:
            self.bottleneck_attention = SpatialAttention(3, channels[-1], channels[-1] // 2, attention_kernels[-1])

        # coarsest decoder level first
        self.decoder = nn.ModuleList(
            [
                _DecoderLevel(
                    channels[level + 1],
                    channels[level],
                    self.level_kernels[level],
                    pools[level],
                    attention,
                    attention_kernels[level],
                )
                for level in reversed(range(levels - 1))
            ]
        )
        self.head = nn.Conv3d(channels[0], out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Segment ``x``.

        Args:
            x: input of shape ``(B, in_channels, H, W, D)``, ``D`` the slice axis, sizes multiples of
                :attr:`divisors`.

        Returns:
            Logits ``(B, out_channels, H, W, D)``; in training mode with ``attention`` ``"pa"`` or ``"spvpa"``, the
            tuple ``(logits, [A_1, ..., A_L])`` of the logits and the attention maps, finest first.

        Raises:
            ValueError: if ``x`` is not 5D or a spatial size is not a multiple of its divisor.
        """
        if x.dim() != 5:
            raise ValueError(f"expected a 5D input (B, C, H, W, D), got shape {x.shape}.")
        for axis, (size, divisor) in enumerate(zip(x.shape[2:], self.divisors)):
            if size % divisor != 0:
                raise ValueError(
                    f"input spatial shape {x.shape[2:]}: size {size} of spatial axis {axis} must be a multiple of "
                    f"{divisor} (required multiples (H, W, D) = {self.divisors} for dims='{self.dims}', "
                    f"levels={self.levels}); pad or crop the input."
                )
        skips: list[Tensor] = []
        for level in self.encoder:
            skip, x = level(x)
            skips.append(skip)
        x = self.bottleneck(x)
        maps: list[Tensor] = []  # coarsest first
        if self.bottleneck_attention is not None:
            x, attention_map = self.bottleneck_attention(x)
            maps.append(attention_map)
        for j, level in enumerate(self.decoder):
            x, level_map = level(x, skips[-1 - j])
            if level_map is not None:
                maps.append(level_map)
        logits = self.head(x)
        if self.training and self.return_attention_maps:
            maps.reverse()
            return logits, maps
        return logits
