"""Convolution blocks shared by the AGUNet (Bouget et al. 2021) and 2.5D SpvPA U-Net (Wang et al. 2019) networks."""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["ConvBlock"]


class ConvBlock(nn.Sequential):
    """Two stacked ``conv -> norm -> act`` units, the basic U-Net level block.

    This is the ``convolution_block`` of the AGUNet authors' Keras code (Bouget et al. 2021, §2.3): each unit is a
    convolution with bias (Keras default) and "same" padding, followed by batch normalisation and the activation.
    Each unit is a MONAI :class:`~monai.networks.blocks.Convolution` with ``adn_ordering="NA"``.

    Args:
        spatial_dims: number of spatial dimensions (1, 2 or 3).
        in_channels: number of input channels.
        out_channels: number of output channels of both convolutions.
        kernel_size: odd convolution kernel size, an int or one value per spatial axis (e.g. ``(3, 3, 1)`` for an
            in-plane 2.5D block).
        act: activation type and arguments, as accepted by MONAI's ``Act`` factory (e.g. ``"RELU"``, ``"PRELU"``).
        norm: normalisation type and arguments, as accepted by MONAI's ``Norm`` factory.

    Shape:
        - Input: ``(B, in_channels, *spatial)``.
        - Output: ``(B, out_channels, *spatial)``, same spatial size as the input.

    Raises:
        ValueError: if ``spatial_dims``, the channel counts or ``kernel_size`` are invalid.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: Sequence[int] | int = 3,
        act: tuple | str | None = "RELU",
        norm: tuple | str | None = "BATCH",
    ) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}.")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"in_channels and out_channels must be positive, got in_channels={in_channels}, "
                f"out_channels={out_channels}."
            )
        kernel = [kernel_size] * spatial_dims if isinstance(kernel_size, int) else list(kernel_size)
        if len(kernel) != spatial_dims:
            raise ValueError(
                f"kernel_size {kernel_size} has {len(kernel)} values, give an int or one value per spatial axis "
                f"({spatial_dims})."
            )
        if any(k < 1 or k % 2 == 0 for k in kernel):
            raise ValueError(f"kernel_size values must be positive and odd for 'same' padding, got {kernel_size}.")
        for index, channels in enumerate((in_channels, out_channels), start=1):
            self.add_module(
                f"conv{index}",
                Convolution(
                    spatial_dims,
                    channels,
                    out_channels,
                    kernel_size=kernel,
                    adn_ordering="NA",
                    act=act,
                    norm=norm,
                    bias=True,
                ),
            )
