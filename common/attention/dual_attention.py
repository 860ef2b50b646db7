"""Dual attention (position + channel attention, Fu et al. 2019) as used in DAUNet/DAGUNet (Bouget et al. 2021)."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Dropout
from torch import Tensor, nn

__all__ = ["ChannelAttention", "DualAttention", "PositionAttention"]


class PositionAttention(nn.Module):
    """Position (spatial) attention module, PAM of DANet (Fu et al. 2019, "Dual Attention Network for Scene
    Segmentation"), as in Bouget et al. 2021, §2.3.1.

    With ``N`` the number of voxels, ``q = W_q x`` and ``k = W_k x`` (``in_channels // reduction`` channels) and
    ``v = W_v x`` (``in_channels`` channels), all 1x1(x1) convolutions without bias::

        attention = softmax(q^T k)              # (N, N), softmax over the last axis
        output    = gamma * (v attention^T) + x # each voxel aggregates the values of all voxels

    ``gamma`` is a learnable scalar initialised to 0, so the module is exactly the identity at initialisation.
    Memory grows as ``N**2``: use it on coarse feature maps only (the AGUNet bottleneck has 8x8x9 voxels).

    Args:
        spatial_dims: number of spatial dimensions (1, 2 or 3).
        in_channels: number of input (and output) channels.
        reduction: channel reduction of the query and key projections (8 in DANet and the authors' code).

    Shape:
        - Input: ``(B, in_channels, *spatial)``.
        - Output: same as input.

    Raises:
        ValueError: if ``in_channels // reduction`` is smaller than 1.
    """

    def __init__(self, spatial_dims: int, in_channels: int, reduction: int = 8) -> None:
        super().__init__()
        if reduction < 1 or in_channels // reduction < 1:
            raise ValueError(
                f"in_channels // reduction must be at least 1, got in_channels={in_channels}, reduction={reduction}; "
                "lower reduction or use more channels."
            )
        conv_type = Conv[Conv.CONV, spatial_dims]
        self.query = conv_type(in_channels, in_channels // reduction, kernel_size=1, bias=False)
        self.key = conv_type(in_channels, in_channels // reduction, kernel_size=1, bias=False)
        self.value = conv_type(in_channels, in_channels, kernel_size=1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        query = self.query(x).flatten(2)  # (B, C', N)
        key = self.key(x).flatten(2)  # (B, C', N)
        value = self.value(x).flatten(2)  # (B, C, N)
        attention = torch.softmax(torch.bmm(query.transpose(1, 2), key), dim=-1)  # (B, N, N)
        attended = torch.bmm(value, attention.transpose(1, 2)).view_as(x)
        return self.gamma * attended + x


class ChannelAttention(nn.Module):
    """Channel attention module, CAM of DANet (Fu et al. 2019), as in Bouget et al. 2021, §2.3.1.

    With ``A`` the input reshaped to ``(C, N)``::

        energy    = A A^T                        # (C, C), symmetric
        attention = softmax(energy)              # softmax over the last axis
        output    = gamma * (attention^T A) + x

    This follows the authors' Keras code (taken from ``niecongchong/DANet-keras``), which differs from the DANet
    reference implementation in two ways: the softmax is applied to the energy directly (DANet uses
    ``max(energy) - energy``), and, being written channels-last as ``A^T softmax(A A^T)``, it aggregates with the
    *transposed* attention matrix (each output channel is a mixture weighted by a column of the softmax).
    ``gamma`` is a learnable scalar initialised to 0, so the module is exactly the identity at initialisation. The
    module has no other parameter.

    Shape:
        - Input: ``(B, C, *spatial)``.
        - Output: same as input.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        features = x.flatten(2)  # (B, C, N)
        attention = torch.softmax(torch.bmm(features, features.transpose(1, 2)), dim=-1)  # (B, C, C)
        attended = torch.bmm(attention.transpose(1, 2), features).view_as(x)
        return self.gamma * attended + x


class DualAttention(nn.Module):
    """Dual attention block of DAUNet/DAGUNet (Bouget et al. 2021, §2.3.1 and Fig. 2), applied at the bottleneck.

    As in the authors' Keras code, each attention branch is refined into attention feature maps (AFMs) by
    ``conv3 -> BN -> ReLU -> spatial dropout -> conv3`` (separate weights per branch), and the two branches are
    fused as ``sum -> spatial dropout -> conv1 -> BN``::

        pam = refine_p(PositionAttention(x));  cam = refine_c(ChannelAttention(x))
        out = BN(conv1(dropout(pam + cam)))

    All convolutions have a bias. Spatial dropout (whole channels, rate 0.5 in the paper) is
    ``nn.Dropout{spatial_dims}d``.

    Args:
        spatial_dims: number of spatial dimensions (1, 2 or 3).
        in_channels: number of input (and output) channels.
        dropout: spatial dropout rate, in ``[0, 1)``.
        reduction: channel reduction of the position attention query and key projections.

    Shape:
        - Input: ``(B, in_channels, *spatial)``.
        - Output: same as input.

    Raises:
        ValueError: if ``dropout`` is not in ``[0, 1)`` or the channels do not allow the reduction.
    """

    def __init__(self, spatial_dims: int, in_channels: int, dropout: float = 0.5, reduction: int = 8) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.position = nn.Sequential(
            PositionAttention(spatial_dims, in_channels, reduction),
            *self._refinement(spatial_dims, in_channels, dropout),
        )
        self.channel = nn.Sequential(ChannelAttention(), *self._refinement(spatial_dims, in_channels, dropout))
        self.fuse = nn.Sequential(
            Dropout[Dropout.DROPOUT, spatial_dims](dropout),
            Convolution(spatial_dims, in_channels, in_channels, kernel_size=1, act=None, norm="BATCH"),
        )

    @staticmethod
    def _refinement(spatial_dims: int, channels: int, dropout: float) -> tuple[nn.Module, nn.Module]:
        """``conv3 -> BN -> ReLU -> spatial dropout`` then ``conv3``, turning raw attention maps into AFMs."""
        return (
            Convolution(
                spatial_dims,
                channels,
                channels,
                kernel_size=3,
                adn_ordering="NAD",
                act="RELU",
                norm="BATCH",
                dropout=dropout,
                dropout_dim=spatial_dims,
            ),
            Convolution(spatial_dims, channels, channels, kernel_size=3, conv_only=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(self.position(x) + self.channel(x))
