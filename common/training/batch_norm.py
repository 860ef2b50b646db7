"""Fine-tuning on patches with the batch-normalisation statistics of whole volumes."""

from __future__ import annotations

import torch
from torch.utils.hooks import RemovableHandle

__all__ = ["freeze_batch_norm"]


def freeze_batch_norm(network: torch.nn.Module) -> RemovableHandle:
    """Keep every batch-normalisation layer of ``network`` in evaluation mode, also while it trains.

    A network trained on whole volumes and fine-tuned on patches would otherwise normalise each patch batch with its
    own statistics and move the running statistics away from the whole volumes it sees at inference. Frozen, the
    layers normalise with the running statistics they have (their affine weights still learn). MONAI's trainers call
    ``network.train()`` at every iteration, so this is a forward pre-hook that puts the layers back in evaluation
    mode before each forward pass.

    Returns:
        The hook's handle (``handle.remove()`` unfreezes).
    """
    layers = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers:
        raise ValueError(f"{type(network).__name__} has no batch-normalisation layer to freeze.")

    def to_eval(module: torch.nn.Module, args: tuple) -> None:
        for layer in layers:
            layer.eval()

    return network.register_forward_pre_hook(to_eval)
