"""Speed benchmark of the meningioma bundle: training throughput, network latency and per-patient processing time.

``python -m meningioma_agunet.benchmark [--device cuda cpu] [--repeats N] [--output DIR] [--update-model-card]``

Side by side with stock MONAI: ``AttentionUnet`` with the same channels (eager fp32, batch 2, 128 x 128 x 144) for
training throughput and latency, and the stock MONAI inference pipeline (``LoadImaged``, ``Orientationd``,
``Spacingd``, ``CropForegroundd``, ``Resized``, network, ``Invertd``, ``SaveImaged``) for the processing of a new
patient: a synthetic 256 x 256 x 192, 1 mm NIfTI from disk to mask and report on disk, with and without model loading,
on the GPU and on the CPU; on the CPU also the latency of AGUNet-MS-DS in eager fp32 and bf16, TorchScript and ONNX
Runtime. Training rows need CUDA (or ``--allow-cpu-training``, with ``--tiny``). Results go to
``bundles/meningioma_agunet/eval/benchmark/benchmark.{json,md}`` and, with ``--update-model-card``, to the Speed section
of the model card. See :mod:`common.benchmarking` for what each figure is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from common import benchmarking

__all__ = ["SPEC", "main"]


def _attention_unet(get: Callable[[str], Any]) -> torch.nn.Module:
    """Stock MONAI ``AttentionUnet`` with the bundle's channels per level."""
    from monai.networks.nets import AttentionUnet

    filters = [int(f) for f in get("filters")]
    return AttentionUnet(
        spatial_dims=3, in_channels=1, out_channels=2, channels=filters, strides=[2] * (len(filters) - 1)
    )


SPEC = benchmarking.BundleBenchmark(
    name="meningioma_agunet",
    phantom_family="meningioma",
    input_shape=(256, 256, 192),
    input_spacing=(1.0, 1.0, 1.0),
    variants={"AGUNet-MS-DS": {}, "DAGUNet-MS-DS": {"attention": "dual_guided"}},
    network_shape_id="spatial_size",
    latency_input="one volume",
    stock_network=_attention_unet,
    stock_network_label="AttentionUnet",
    stock_resize_id="spatial_size",
    paper_note=(
        "Paper (Bouget et al. 2021, Table 3, Quadro P5000): AGUNet-MS-DS 18.66 M parameters, 3.7 s GPU inference, "
        "about 14 s total processing per patient, 8.7 s CPU inference."
    ),
    tiny_overrides={
        "filters": [2, 4, 4, 8, 8],
        "spatial_size": [32, 32, 32],
        "target_spacing": [4.0, 4.0, 4.0],
        "num_workers": 0,
    },
    tiny_input_shape=(64, 64, 48),
    tiny_input_spacing=(4.0, 4.0, 4.0),
    # what each part of the fast path saves: the shipped default against each one turned off
    processing_variants={
        "fp32, default layout (precision fp32, channels_last false)": {"precision": "fp32", "channels_last": False},
        "float32 probability map (quantize_prob false)": {"quantize_prob": False},
        "one data-loader worker (num_workers 1)": {"num_workers": 1},
    },
)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (see ``--help``); returns the results written to ``benchmark.json``."""
    return benchmarking.main(SPEC, argv)


if __name__ == "__main__":
    main()
