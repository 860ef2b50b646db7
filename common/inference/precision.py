"""The fast path of every forward pass: bf16 autocast and ``channels_last_3d`` where the hardware runs them natively.

On CPUs with native bf16 arithmetic (AVX512-BF16 or AMX, e.g. AMD Zen 4, Intel Sapphire Rapids) oneDNN runs 3D
convolutions in bf16 2.5-3.4x faster than in fp32, and the ``channels_last_3d`` layout is faster in both. Without
native bf16 it is emulated, hundreds of times slower than fp32 (AGUNet-MS-DS at 64 x 64 x 80 on an AVX2-only AMD
EPYC: 198 s against 0.76 s), so ``"auto"`` keeps fp32 there and a forced ``"bf16"`` logs a warning. On CUDA devices
with bf16 (Ampere and later) ``"auto"`` uses it too.

MONAI's engines hard-code ``torch.autocast("cuda")`` for ``amp``, so the bundles leave ``amp`` off and wrap their
inferer in :class:`PrecisionInferer` instead: one switch for training, validation, evaluation and inference, on CPU
and GPU alike. Its outputs are always fp32 and in the default layout, so losses, probabilities, masks and metrics are
computed in fp32.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, SimpleInferer

__all__ = ["PRECISIONS", "PrecisionInferer", "autocast_dtype", "has_native_bf16", "precision_label", "to_fp32"]

logger = logging.getLogger(__name__)

#: Values of the bundles' ``precision`` key.
PRECISIONS = ("auto", "bf16", "fp32")


@functools.cache
def _cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX tiles), not only oneDNN's emulation."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def has_native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA device with bf16 support or a CPU with bf16 instructions."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_has_native_bf16()


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``: ``torch.bfloat16``, or ``None`` for plain fp32.

    Args:
        precision: ``"auto"`` (bf16 where :func:`has_native_bf16`, else fp32), ``"bf16"`` (always) or ``"fp32"``.
        device: where the forward pass runs.

    Raises:
        ValueError: an unknown ``precision``, naming the key and its values.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    if precision == "fp32":
        return None
    if precision == "auto" and not has_native_bf16(device):
        return None
    return torch.bfloat16


def to_fp32(output: Any) -> Any:
    """Floating tensors of ``output`` (a tensor, or lists, tuples and dicts of them) as fp32 in the default layout."""
    if isinstance(output, torch.Tensor):
        return output.float().contiguous() if output.is_floating_point() else output
    if isinstance(output, Mapping):
        return type(output)({key: to_fp32(value) for key, value in output.items()})
    if isinstance(output, Sequence) and not isinstance(output, str):
        return type(output)(to_fp32(value) for value in output)
    return output


def _is_channels_last(network: torch.nn.Module) -> bool:
    """Whether every 5D weight of ``network`` is in ``channels_last_3d`` (a weight with one input channel has the
    same strides in both layouts, so every weight is checked)."""
    return all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in network.parameters() if p.ndim == 5)


class PrecisionInferer(Inferer):
    """Runs another inferer under bf16 autocast and in ``channels_last_3d`` where that is faster; returns fp32.

    A ``MetaTensor`` input is run as a plain tensor (the metadata stays with the batch, where ``Invertd`` finds it),
    so the output is a plain tensor.

    Args:
        inferer: the inferer to run (``SimpleInferer``, ``SlidingWindowInferer``, ...). Defaults to ``SimpleInferer()``.
        precision: ``"auto"``, ``"bf16"`` or ``"fp32"`` (see :func:`autocast_dtype`), resolved for the device of the
            inputs on every call.
        channels_last: convert 5D inputs, and the network's 5D weights on the first call, to ``channels_last_3d``.
            Their values do not change; a state dict saved afterwards loads into a contiguous network as usual.
    """

    def __init__(self, inferer: Inferer | None = None, precision: str = "auto", channels_last: bool = True) -> None:
        autocast_dtype(precision, "cpu")  # validates the value
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.precision = precision
        self.channels_last = bool(channels_last)
        self._logged: set[str] = set()

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if isinstance(inputs, MetaTensor):
            inputs = inputs.as_tensor()  # MONAI's metadata tracking costs time in every op of the network
        dtype = autocast_dtype(self.precision, inputs.device)
        if inputs.device.type not in self._logged:
            self._logged.add(inputs.device.type)
            logger.info(
                f"forward pass on {inputs.device.type} in {'bf16 autocast' if dtype else 'fp32'}"
                f"{', channels_last_3d' if self.channels_last else ''} (precision={self.precision})"
            )
            if dtype is not None and not has_native_bf16(inputs.device):
                logger.warning(
                    f"precision={self.precision} on {inputs.device.type}: no native bf16 there, so bf16 is emulated, "
                    "hundreds of times slower than fp32; use precision auto or fp32"
                )
        if self.channels_last and inputs.ndim == 5:
            inputs = inputs.contiguous(memory_format=torch.channels_last_3d)
            if isinstance(network, torch.nn.Module) and not _is_channels_last(network):
                network.to(memory_format=torch.channels_last_3d)
        with torch.autocast(inputs.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            output = self.inferer(inputs, network, *args, **kwargs)
        return to_fp32(output)


def precision_label(inferer: Any, device: torch.device | str) -> str:
    """``"bf16"`` or ``"fp32"``: what ``inferer`` computes in on ``device`` (fp32 unless a ``PrecisionInferer``)."""
    if isinstance(inferer, PrecisionInferer) and autocast_dtype(inferer.precision, device) is not None:
        return "bf16"
    return "fp32"
