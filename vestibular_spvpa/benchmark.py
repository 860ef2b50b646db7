"""Speed benchmark of the vestibular schwannoma bundle: training throughput, network latency, per-patient processing.

``python -m vestibular_spvpa.benchmark [--device cuda cpu] [--repeats N] [--output DIR] [--update-model-card]``

Side by side with stock MONAI: ``AttentionUnet`` with the same channels per level and the 2.5D network's pooling
(in-plane only on the first two levels; MONAI's has 3 x 3 x 3 kernels throughout), eager fp32, batch 2, on the training
box (256 x 128 x 32 voxels), and the stock MONAI inference pipeline (``LoadImaged``, ``Orientationd``, ``Spacingd``,
``CropForegroundd``, the bundle's sliding window with the same network over the whole volume, ``Invertd``,
``SaveImaged``) for the processing of a new patient: a synthetic 512 x 512 x 80 volume of 0.4 x 0.4 x 1.5 mm from disk
to mask and report on disk, with and without model loading, on the GPU and on the CPU (where the latency is also
measured in eager bf16, TorchScript and ONNX Runtime). Ours is coarse-to-fine (the shipped default); the whole-volume
window (bf16; the stock pipeline runs it in fp32, as the bundle did before) is timed on the same file. Latency is one
sliding-window batch; the whole volume's network time is in the processing profile. Results go to
``bundles/vestibular_spvpa/eval/benchmark/benchmark.{json,md}`` and, with ``--update-model-card``, to the Speed
section of the model card. See :mod:`common.benchmarking`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from common import benchmarking

__all__ = ["SPEC", "main"]

#: Pooling between the five levels per ``dims`` (the network's 2.5D layout: in-plane pooling on levels 1-2).
_STRIDES = {
    "2d": [(2, 2, 1)] * 4,
    "2.5d": [(2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2)],
    "3d": [(2, 2, 2)] * 4,
}


def _attention_unet(get: Callable[[str], Any]) -> torch.nn.Module:
    """Stock MONAI ``AttentionUnet`` with the bundle's channels (N_l = 16 l) and pooling."""
    from monai.networks.nets import AttentionUnet

    base = int(get("base_channels"))
    return AttentionUnet(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        channels=[base * level for level in range(1, 6)],
        strides=_STRIDES[str(get("dims"))],
    )


SPEC = benchmarking.BundleBenchmark(
    name="vestibular_spvpa",
    phantom_family="vestibular",
    input_shape=(512, 512, 80),
    input_spacing=(0.4, 0.4, 1.5),
    variants={"2.5D U-Net + SpvPA": {}},
    network_shape_id="patch_size",
    latency_batch_id=("window_inferer#inferer#sw_batch_size", "inferer#inferer#sw_batch_size"),
    latency_input="one sliding-window batch",
    stock_network=_attention_unet,
    stock_network_label="AttentionUnet",
    stock_resize_id=None,
    paper_note="Paper (Wang et al. 2019): about 3.5 s per volume (100 x 50 x 50 mm box cropped by hand).",
    tiny_overrides={
        "base_channels": 2,
        "target_spacing": [2.0, 2.0, 4.0],
        "patch_mm": [64.0, 64.0, 32.0],
        "num_workers": 0,
    },
    tiny_input_shape=(102, 102, 30),
    tiny_input_spacing=(2.0, 2.0, 4.0),
    # the stock pipeline is the whole-volume window in fp32, as the bundle ran before coarse-to-fine
    processing_variants={"whole-volume sliding window (localise false)": {"localise": False}},
)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (see ``--help``); returns the results written to ``benchmark.json``."""
    return benchmarking.main(SPEC, argv)


if __name__ == "__main__":
    main()
