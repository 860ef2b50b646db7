"""Batch-normalisation statistics: kept at those of whole volumes while fine-tuning on patches, and recomputed for
averaged weights."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from monai.inferers import Inferer, SimpleInferer
from torch.utils.hooks import RemovableHandle
from tqdm import tqdm

__all__ = ["batch_norm_layers", "freeze_batch_norm", "recalibrate_batch_norm"]


def batch_norm_layers(network: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    """Every batch-normalisation layer of ``network``.

    Raises:
        ValueError: ``network`` has none, naming its class.
    """
    layers = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers:
        raise ValueError(f"{type(network).__name__} has no batch-normalisation layer.")
    return layers


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
    layers = batch_norm_layers(network)

    def to_eval(module: torch.nn.Module, args: tuple) -> None:
        for layer in layers:
            layer.eval()

    return network.register_forward_pre_hook(to_eval)


def recalibrate_batch_norm(
    network: torch.nn.Module,
    data_loader: Iterable[Mapping[str, torch.Tensor]],
    inferer: Inferer | None = None,
    device: torch.device | str = "cpu",
    image_key: str = "image",
) -> int:
    """Recompute the running statistics of every batch-normalisation layer of ``network`` from ``data_loader``.

    The procedure of ``torch.optim.swa_utils.update_bn``, the last step of stochastic weight averaging: the running
    mean and variance of weights averaged from two runs are the mean of the two runs' statistics, not the statistics
    of the averaged network's own activations. Every layer is reset and set to a cumulative average
    (``momentum=None``), then the network runs once in training mode over the data, so that each layer's statistics
    become the plain average over all batches. Unlike ``update_bn`` it runs without gradients and through
    ``inferer`` (e.g. :class:`common.inference.precision.PrecisionInferer`, for bf16 and ``channels_last_3d``), and it
    reads ``image_key`` from MONAI's dictionary batches. Weights are not changed; momenta and the training flag are
    restored afterwards.

    Args:
        network: the network, on ``device``.
        data_loader: batches (dictionaries) of the preprocessed training images, without random augmentation.
        inferer: runs the forward pass (default ``SimpleInferer()``).
        device: where ``network`` is.
        image_key: the images' key in each batch.

    Returns:
        The number of batches seen.

    Raises:
        ValueError: ``network`` has no batch-normalisation layer, or ``data_loader`` gave no batch.
    """
    layers = batch_norm_layers(network)
    inferer = inferer if inferer is not None else SimpleInferer()
    momenta = {layer: layer.momentum for layer in layers}
    was_training = network.training
    batches = 0
    try:
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
        network.train()
        with torch.no_grad():
            for batch in tqdm(data_loader, desc="batch-normalisation statistics", unit="batch"):
                inferer(batch[image_key].to(device), network)
                batches += 1
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        network.train(was_training)
    if batches == 0:
        raise ValueError("recalibrate_batch_norm: the data loader gave no batch, so no statistics were computed.")
    return batches
