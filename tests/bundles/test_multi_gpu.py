"""``multi_gpu_train.json`` under a real ``torchrun`` with two CPU processes (gloo) for both bundles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bundle_helpers import REPO, TINY_MENINGIOMA, TINY_VESTIBULAR, bundle_dir, config_files, free_port, workflow

from common.phantoms import write_meningioma_dataset, write_vestibular_dataset

CASES = {
    # fp32: the ranks' weights are compared bit for bit, and the bf16 fast path's oneDNN kernels are not repeatable
    "meningioma_agunet": (
        write_meningioma_dataset,
        {**TINY_MENINGIOMA, "target_spacing": [4.0, 4.0, 4.0], "precision": "fp32"},
    ),
    "vestibular_spvpa": (write_vestibular_dataset, {**TINY_VESTIBULAR, "val_interval": 1, "precision": "fp32"}),
}


def torchrun_train(bundle: str, tmp_path: Path, **overrides) -> list[dict[str, torch.Tensor]]:
    """One epoch of ``train`` + ``multi_gpu_train`` on two gloo ranks; returns each rank's final state dict.

    The dataset has 10 cases: 6 training, 2 validation, 2 test in fold 0, so that each rank validates one case.
    """
    write_dataset, tiny = CASES[bundle]
    write_dataset(tmp_path / "data", num_training=10, num_test=0, seed=3, spacing_scale=4.0)
    # a test-only overlay: each rank saves its final weights
    rank_weights = tmp_path / "rank_weights.json"
    save = f"$torch.save(@network.module.state_dict(), '{tmp_path}/rank' + os.environ['RANK'] + '.pt')"
    finalize = [save, "$dist.barrier()", "$dist.destroy_process_group()"]  # as multi_gpu_train.json: all ranks done
    rank_weights.write_text(json.dumps({"finalize": finalize}), encoding="utf-8")
    configs = [*json.loads(config_files(bundle, "train", "multi_gpu_train")), str(rank_weights)]
    overrides = {
        **tiny,
        "bundle_root": str(bundle_dir(bundle)),
        "dataset_dir": str(tmp_path / "data"),
        "output_dir": f"$'{tmp_path}/eval_rank' + os.environ['RANK']",
        "ckpt_dir": f"$'{tmp_path}/models_rank' + os.environ['RANK']",
        "epochs": 1,
        **overrides,
    }
    cli = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    cli += ["--master_port", str(free_port()), "-m", "monai.bundle", "run", "--config_file", json.dumps(configs)]
    cli += ["--meta_file", str(bundle_dir(bundle) / "configs" / "metadata.json")]
    for key, value in overrides.items():
        cli += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    proc = subprocess.run(
        cli, capture_output=True, encoding="utf-8", errors="replace", timeout=900, cwd=REPO, check=False
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]


def assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], keys) -> None:
    """``actual`` equals ``expected`` bit for bit on ``keys``."""
    for key in keys:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("bundle", sorted(CASES))
def test_two_process_training_keeps_ranks_in_sync_and_writes_only_on_rank_0(bundle, tmp_path):
    rank0, rank1 = torchrun_train(bundle, tmp_path)
    assert rank0.keys() == rank1.keys()
    assert_same(rank1, rank0, rank0)
    # the best (here: the only) checkpoint is a plain state dict of the unwrapped network, written by rank 0 alone
    best = torch.load(tmp_path / "models_rank0" / "model.pt", weights_only=True)
    assert best.keys() == rank0.keys()
    assert_same(best, rank0, rank0)
    assert list((tmp_path / "eval_rank0").glob("events.out.tfevents*")), "rank 0 wrote no TensorBoard statistics"
    assert not (tmp_path / "eval_rank1").exists() and not (tmp_path / "models_rank1").exists(), "rank 1 wrote files"


@pytest.mark.parametrize("bundle", sorted(CASES))
def test_two_process_fine_tuning_starts_every_rank_from_init_checkpoint(bundle, tmp_path):
    """A fine-tuning stage under torchrun loads ``init_checkpoint`` (and freezes batch norm where the bundle can).

    The checkpoint is the network's own initialisation with every value moved by up to 0.01. With a learning rate of 0
    the weights cannot move, so each rank must end with the checkpoint's parameters; with ``freeze_batch_norm`` the
    batch-norm running statistics must not move either.
    """
    _, tiny = CASES[bundle]
    network = workflow(bundle, ["train"], "train", **tiny).parser.get_parsed_content("network_def")
    generator = torch.Generator().manual_seed(7)
    start = {
        key: value + 0.01 * torch.rand(value.shape, generator=generator) if value.is_floating_point() else value
        for key, value in network.state_dict().items()
    }
    torch.save(start, tmp_path / "start.pt")
    freeze = {"freeze_batch_norm": True} if bundle == "meningioma_agunet" else {}
    ranks = torchrun_train(bundle, tmp_path, init_checkpoint=str(tmp_path / "start.pt"), learning_rate=0.0, **freeze)
    parameters = [name for name, _ in network.named_parameters()]
    for weights in ranks:
        assert_same(weights, start, start if freeze else parameters)
