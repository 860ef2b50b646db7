"""Bundle configs as the benchmark uses them: a ``ConfigWorkflow`` per config, device overrides, networks, weights.

The bundles' networks are built through their configs, so nothing in :mod:`common.benchmarking` imports a bundle
package.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "bundle_workflow",
    "device_overrides",
    "network_factory",
    "parse_config_item",
    "save_background_checkpoint",
]


def bundle_workflow(config_file: str | Path, workflow_type: str = "infer", **overrides: Any):
    """A ``monai.bundle.ConfigWorkflow`` of one config file (metadata beside it), without the logging config."""
    from monai.bundle import ConfigWorkflow

    config_file = Path(config_file)
    quiet = logging.getLogger("monai.bundle.workflows")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "Logging file is set to False, skipping logging."
    try:
        return ConfigWorkflow(
            config_file=str(config_file),
            meta_file=str(config_file.parent / "metadata.json"),
            logging_file=False,
            workflow_type=workflow_type,
            **overrides,
        )
    finally:
        quiet.setLevel(level)


def device_overrides(device: torch.device | str) -> dict[str, Any]:
    """Config overrides that pin a bundle config to ``device`` (its ``precision`` then resolves for that device)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    return {"device": f"$torch.device('{device}')"}


def parse_config_item(
    config_file: str | Path, item: str, workflow_type: str = "infer", instantiate: bool = True, **overrides: Any
) -> Any:
    """The parsed value of one config id (e.g. ``"network_def"``, ``"filters"``) with ``overrides``."""
    flow = bundle_workflow(config_file, workflow_type, **overrides)
    return flow.parser.get_parsed_content(item, instantiate=instantiate)


def network_factory(config_file: str | Path, item: str = "network_def", **overrides: Any) -> Callable[[], Any]:
    """A function that builds a fresh network from a config's ``network_def`` (parsing is done here, once)."""
    component = parse_config_item(config_file, item, instantiate=False, **overrides)
    return component.instantiate


def save_background_checkpoint(
    network: torch.nn.Module, path: str | Path, output_layer: str = "head", logit_margin: float = 10.0
) -> dict[str, Any]:
    """Save a random network's state dict with its output layer biased towards background (channel 0).

    A randomly initialised segmentation network predicts about 0.5 everywhere, so its thresholded mask covers the whole
    input, and writing and measuring such a mask costs what no trained network would produce. Adding ``logit_margin``
    to the background logit makes the prediction background everywhere (an empty mask, like a scan without tumour);
    the cost of reporting a real lesion is measured separately.
    """
    layer = network.get_submodule(output_layer)
    if getattr(layer, "bias", None) is None:
        raise ValueError(f"{output_layer} of {type(network).__name__} has no bias to shift.")
    with torch.no_grad():
        layer.bias.zero_()
        layer.bias[0] = logit_margin
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), str(path))
    return {"path": str(path), "output_layer": output_layer, "background_logit_margin": logit_margin}
