"""Residual spatial attention module of the 2.5D SpvPA U-Net (Wang et al. 2019, §2, Fig. 2)."""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.blocks import Convolution
from torch import Tensor, nn

__all__ = ["SpatialAttention"]


class SpatialAttention(nn.Module):
    """Single-channel spatial attention map with a residual connection.

    Wang et al. 2019 ("Automatic Segmentation of Vestibular Schwannoma from T2-Weighted MRI by Deep Spatial Attention
    with Hardness-Weighted Loss", §2 "Multi-Scale Supervised Spatial Attention", Fig. 2)::

        A = Sigmoid(W_2 ReLU(W_1 x))   # one coefficient per voxel, in (0, 1)
        y = x * (1 + A)                # residual attention: x + A * x

    ``W_1`` reduces the channels to ``inter_channels`` (``N_l / 2`` in the paper) and ``W_2`` to one; both are
    convolutions with bias and "same" padding, without normalisation. ``A`` is returned alongside ``y`` so that it
    can be supervised (the SpvPA attention loss, Eq. 1) or displayed (Fig. 3).

    Args:
        spatial_dims: number of spatial dimensions (1, 2 or 3).
        in_channels: channels of the input features ``x``.
        inter_channels: channels after the first convolution.
        kernel_size: odd kernel size of both convolutions, an int or one value per spatial axis (e.g. ``(3, 3, 1)``);
            the paper does not give it, 1 (pointwise) by default.

    Shape:
        - Input: ``(B, in_channels, *spatial)``.
        - Output: a tuple ``(y, A)`` with ``y`` of shape ``(B, in_channels, *spatial)`` and the attention map ``A``
          of shape ``(B, 1, *spatial)``.

    Raises:
        ValueError: if ``spatial_dims``, a channel count or ``kernel_size`` is invalid.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        inter_channels: int,
        kernel_size: Sequence[int] | int = 1,
    ) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}.")
        if in_channels < 1 or inter_channels < 1:
            raise ValueError(
                f"in_channels and inter_channels must be positive, got in_channels={in_channels}, "
                f"inter_channels={inter_channels}."
            )
        kernel = [kernel_size] * spatial_dims if isinstance(kernel_size, int) else list(kernel_size)
        if len(kernel) != spatial_dims:
            raise ValueError(
                f"kernel_size {kernel_size} has {len(kernel)} values, give an int or one value per spatial axis "
                f"({spatial_dims})."
            )
        if any(k < 1 or k % 2 == 0 for k in kernel):
            raise ValueError(f"kernel_size values must be positive and odd for 'same' padding, got {kernel_size}.")
        self.reduce = Convolution(spatial_dims, in_channels, inter_channels, kernel_size=kernel, act="RELU", norm=None)
        self.project = Convolution(spatial_dims, inter_channels, 1, kernel_size=kernel, act="SIGMOID", norm=None)

    def attention_map(self, x: Tensor) -> Tensor:
        """Attention map ``A`` in (0, 1), shape ``(B, 1, *spatial)``."""
        return self.project(self.reduce(x))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Re-weight ``x``; returns ``(x * (1 + A), A)``."""
        attention = self.attention_map(x)
        return x * (1.0 + attention), attention
