"""AGUNet network family of Bouget et al. 2021 (UNet-FV, AGUNet, DAUNet, DAGUNet), §2.3 and Table 3."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import ADN, Convolution
from monai.networks.layers.factories import Conv, Pool
from torch import Tensor, nn

from common.attention import AttentionGate, DualAttention
from common.blocks import ConvBlock

__all__ = ["PAPER_PARAMETERS", "VARIANTS", "AGUNet"]

_ATTENTIONS = ("none", "gate", "dual", "dual_guided")
_GATE_MODES = ("concat", "sum")

VARIANTS: dict[str, dict[str, Any]] = {
    "UNet-FV": {"attention": "none", "multi_scale": False, "deep_supervision": False},
    "AGUNet": {"attention": "gate", "multi_scale": False, "deep_supervision": False},
    "AGUNet-MS-DS": {"attention": "gate", "multi_scale": True, "deep_supervision": True},
    "DAUNet-MS-DS": {"attention": "dual", "multi_scale": True, "deep_supervision": True},
    "DAGUNet-MS-DS": {"attention": "dual_guided", "multi_scale": True, "deep_supervision": True},
}
"""Table 3 architectures (Bouget et al. 2021) -> :class:`AGUNet` keyword arguments."""

PAPER_PARAMETERS: dict[str, float] = {
    "UNet-FV": 5.89e6,
    "AGUNet": 16.41e6,
    "AGUNet-MS-DS": 18.66e6,
    "DAUNet-MS-DS": 25.72e6,
    "DAGUNet-MS-DS": 30.96e6,
}
"""Parameter counts reported in Table 3 of Bouget et al. 2021 (the UNet-FV row is the model of a previous study)."""


class _EncoderLevel(nn.Module):
    """Encoder level: optional multi-scale input branch (conv3 + ReLU on the pooled image, concatenated first),
    then a :class:`ConvBlock`. Returns the skip features (before max-pooling)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, image_channels: int = 0) -> None:
        super().__init__()
        self.pyramid: nn.Module | None = None
        if image_channels > 0:
            self.pyramid = Convolution(spatial_dims, image_channels, out_channels, kernel_size=3, act="RELU", norm=None)
            in_channels += out_channels
        self.conv = ConvBlock(spatial_dims, in_channels, out_channels)

    def forward(self, x: Tensor, image: Tensor) -> Tensor:
        if self.pyramid is not None:
            x = torch.cat([self.pyramid(image), x], dim=1)
        return self.conv(x)


class _GatedDecoderLevel(nn.Module):
    """AGUNet decoder level (authors' code): ``g = ReLU(BN(up(x)))``, ``ConvBlock(cat[g, AttentionGate(g, skip)])``."""

    def __init__(self, spatial_dims: int, in_channels: int, skip_channels: int, out_channels: int, mode: str) -> None:
        super().__init__()
        self.up = Convolution(
            spatial_dims,
            in_channels,
            out_channels,
            strides=2,
            kernel_size=3,
            adn_ordering="NA",
            act="RELU",
            norm="BATCH",
            is_transposed=True,
            padding=1,
            output_padding=1,
        )
        self.gate = AttentionGate(spatial_dims, out_channels, skip_channels, out_channels // 2, mode)
        self.conv = ConvBlock(spatial_dims, out_channels + skip_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor, bottom: Tensor) -> Tensor:
        """``bottom`` (the bottleneck features) is unused; it keeps one signature for all decoder levels."""
        g = self.up(x)
        return self.conv(torch.cat([g, self.gate(g, skip)], dim=1))


class _ConcatDecoderLevel(nn.Module):
    """UNet/DAUNet decoder level (authors' code): ``ConvBlock(ReLU(BN(cat[skip, up(x)])))``; with ``guide_stride``
    (DAGUNet) the bottleneck attention maps are upsampled by ``guide_stride`` and concatenated first."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        guide_channels: int = 0,
        guide_stride: int = 1,
    ) -> None:
        super().__init__()
        self.up = Convolution(
            spatial_dims,
            in_channels,
            out_channels,
            strides=2,
            kernel_size=3,
            conv_only=True,
            is_transposed=True,
            padding=1,
            output_padding=1,
        )
        self.guide: nn.Module | None = None
        merged_channels = skip_channels + out_channels
        if guide_channels > 0:
            self.guide = Convolution(
                spatial_dims,
                guide_channels,
                out_channels,
                strides=guide_stride,
                kernel_size=3,
                conv_only=True,
                is_transposed=True,
                padding=1,
                output_padding=guide_stride - 1,
            )
            merged_channels += out_channels
        self.merge = ADN(ordering="NA", in_channels=merged_channels, act="RELU", norm="BATCH", norm_dim=spatial_dims)
        self.conv = ConvBlock(spatial_dims, merged_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor, bottom: Tensor) -> Tensor:
        """``bottom`` (the bottleneck attention features) is used by guided levels only."""
        if self.guide is not None:
            merged = torch.cat([self.guide(bottom), skip, self.up(x)], dim=1)
        else:
            merged = torch.cat([skip, self.up(x)], dim=1)
        return self.conv(self.merge(merged))


class AGUNet(nn.Module):
    """U-Net family of Bouget et al. 2021 ("Meningioma segmentation in T1-weighted MRI leveraging global context and
    attention mechanisms", §2.3), reproducing the authors' released Keras code.

    Encoder (``len(filters) - 1`` levels, 2x max-pooling after each): level ``i`` is a :class:`ConvBlock` producing
    ``filters[i]`` channels. With ``multi_scale`` (§2.3.2), levels ``i > 0`` first concatenate ``ReLU(conv3(image_i))``
    (``filters[i]`` channels) to their input, where ``image_i`` is the input average-pooled ``i`` times with a 2x2x2
    kernel (the paper text says 3x3x3, the authors' code pools 2x2x2; we follow the code). The bottleneck is a
    :class:`ConvBlock` with ``filters[-1]`` channels.

    Attention (§2.3.1):
        - ``"none"`` (UNet-FV): each decoder level is ``ConvBlock(ReLU(BN(cat[skip, up(x)])))``.
        - ``"gate"`` (AGUNet): ``g = ReLU(BN(up(x)))`` then ``ConvBlock(cat[g, AttentionGate(g, skip)])``.
        - ``"dual"`` (DAUNet): a :class:`DualAttention` block replaces the bottleneck features; decoder as ``"none"``.
        - ``"dual_guided"`` (DAGUNet): as ``"dual"``, and every decoder level also concatenates the dual attention
          features upsampled to its grid by a stride-``2**(j+1)`` transposed convolution (``j = 0`` at the bottom).

    ``up`` is a 3x3x3 stride-2 transposed convolution with bias. Heads are 1x1x1 convolutions producing logits (no
    softmax): one on the full-resolution level, plus one per coarser decoder level with ``deep_supervision``.

    Args:
        spatial_dims: number of spatial dimensions, 3 in the paper (2 also works).
        in_channels: number of input channels.
        out_channels: number of output channels (classes, background included).
        filters: channels of each level, finest first, bottleneck last; 5 levels in the paper.
        attention: ``"none"``, ``"gate"``, ``"dual"`` or ``"dual_guided"`` (see above).
        gate_mode: ``"concat"`` (authors' code) or ``"sum"`` (Oktay et al. 2018), see :class:`AttentionGate`;
            only used with ``attention="gate"``.
        multi_scale: whether to feed the downsampled input to every encoder level but the first (§2.3.2).
        deep_supervision: whether to add a head on every decoder level (§2.3.2).
        dropout: spatial dropout rate of the dual attention block (0.5 in the paper).

    Shape:
        - Input: ``(B, in_channels, *spatial)``, each spatial size divisible by ``2 ** (len(filters) - 1)``.
        - Output: ``(B, out_channels, *spatial)`` logits; in training with ``deep_supervision``, or with
          ``all_levels=True``, a list of logits finest first (full, 1/2, 1/4, ... resolution), the MONAI
          :class:`~monai.losses.DeepSupervisionLoss` convention.

    Raises:
        ValueError: on invalid arguments.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        filters: Sequence[int] = (16, 32, 128, 256, 256),
        attention: str = "gate",
        gate_mode: str = "concat",
        multi_scale: bool = True,
        deep_supervision: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be positive, got {in_channels} and {out_channels}.")
        filters = tuple(filters)
        if len(filters) < 2 or min(filters) < 1:
            raise ValueError(
                f"filters must hold at least 2 positive channel counts (levels + bottleneck), got {filters}."
            )
        if attention not in _ATTENTIONS:
            raise ValueError(f"attention must be one of {_ATTENTIONS}, got {attention!r}.")
        if gate_mode not in _GATE_MODES:
            raise ValueError(f"gate_mode must be one of {_GATE_MODES}, got {gate_mode!r}.")
        if attention == "gate" and min(filters[:-1]) < 2:
            raise ValueError(
                f"attention='gate' needs filters[:-1] >= 2 (gates use filters // 2 channels), got {filters}."
            )
        if attention in ("dual", "dual_guided") and filters[-1] < 8:
            raise ValueError(
                f"attention={attention!r} needs filters[-1] >= 8 (position attention reduces channels by 8), "
                f"got {filters}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")

        self.multi_scale = multi_scale
        self.deep_supervision = deep_supervision
        self.divisor = 2 ** (len(filters) - 1)

        self.encoder = nn.ModuleList()
        channels = in_channels
        for i, features in enumerate(filters[:-1]):
            image_channels = in_channels if multi_scale and i > 0 else 0
            self.encoder.append(_EncoderLevel(spatial_dims, channels, features, image_channels))
            channels = features
        self.max_pool = Pool[Pool.MAX, spatial_dims](kernel_size=2)
        self.avg_pool = Pool[Pool.AVG, spatial_dims](kernel_size=2)
        self.bottleneck = ConvBlock(spatial_dims, channels, filters[-1])
        self.dual_attention: nn.Module | None = None
        if attention in ("dual", "dual_guided"):
            self.dual_attention = DualAttention(spatial_dims, filters[-1], dropout)

        self.decoder = nn.ModuleList()
        channels = filters[-1]
        for j, features in enumerate(reversed(filters[:-1])):
            if attention == "gate":
                level: nn.Module = _GatedDecoderLevel(spatial_dims, channels, features, features, gate_mode)
            elif attention == "dual_guided":
                level = _ConcatDecoderLevel(spatial_dims, channels, features, features, filters[-1], 2 ** (j + 1))
            else:
                level = _ConcatDecoderLevel(spatial_dims, channels, features, features)
            self.decoder.append(level)
            channels = features

        conv_type = Conv[Conv.CONV, spatial_dims]
        self.head = conv_type(filters[0], out_channels, kernel_size=1)
        # coarser heads, 1/2 resolution first
        self.deep_heads = nn.ModuleList(
            [conv_type(features, out_channels, kernel_size=1) for features in filters[1:-1]] if deep_supervision else []
        )

    def forward(self, x: Tensor, all_levels: bool = False) -> Tensor | list[Tensor]:
        """Segment ``x``.

        Args:
            x: input of shape ``(B, in_channels, *spatial)``, spatial sizes divisible by ``2 ** (len(filters) - 1)``.
            all_levels: return the logits of every supervised level even in evaluation mode.

        Returns:
            Full-resolution logits ``(B, out_channels, *spatial)``, or, in training with deep supervision or with
            ``all_levels``, the list of logits of every supervised level, finest first.

        Raises:
            ValueError: if a spatial size is not divisible by ``2 ** (len(filters) - 1)``.
        """
        for size in x.shape[2:]:
            if size % self.divisor != 0:
                raise ValueError(
                    f"input spatial shape {x.shape[2:]} must be divisible by {self.divisor} "
                    "(2 ** number of poolings); pad or resize the input."
                )
        image = x
        skips: list[Tensor] = []
        for i, level in enumerate(self.encoder):
            if self.multi_scale and i > 0:
                image = self.avg_pool(image)
            skip = level(x, image)
            skips.append(skip)
            x = self.max_pool(skip)
        x = self.bottleneck(x)
        if self.dual_attention is not None:
            x = self.dual_attention(x)
        bottom = x
        decoded: list[Tensor] = []
        for j, level in enumerate(self.decoder):
            x = level(x, skips[-1 - j], bottom)
            decoded.append(x)

        logits = self.head(x)
        if not (all_levels or (self.training and self.deep_supervision)):
            return logits
        outputs = [logits]
        for k, head in enumerate(self.deep_heads):
            outputs.append(head(decoded[-2 - k]))
        return outputs
