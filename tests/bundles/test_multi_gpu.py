"""``multi_gpu_train.json`` under a real ``torchrun`` with two CPU processes (gloo) for both bundles."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from bundle_helpers import REPO, TINY_MENINGIOMA, TINY_VESTIBULAR, bundle_dir, config_files, free_port

from common.phantoms import write_meningioma_dataset, write_vestibular_dataset

CASES = {
    # fp32: the ranks' weights are compared bit for bit, and the bf16 fast path's oneDNN kernels are not repeatable
    "meningioma_agunet": (
        write_meningioma_dataset,
        {**TINY_MENINGIOMA, "target_spacing": [4.0, 4.0, 4.0], "precision": "fp32"},
    ),
    "vestibular_spvpa": (write_vestibular_dataset, {**TINY_VESTIBULAR, "val_interval": 1, "precision": "fp32"}),
}


@pytest.mark.parametrize("bundle", sorted(CASES))
def test_two_process_training_keeps_ranks_in_sync_and_writes_only_on_rank_0(bundle, tmp_path):
    write_dataset, tiny = CASES[bundle]
    # 10 cases: 6 training, 2 validation, 2 test in fold 0, so that each rank validates one case
    write_dataset(tmp_path / "data", num_training=10, num_test=0, seed=3, spacing_scale=4.0)
    # a test-only overlay: each rank saves its final weights
    rank_weights = tmp_path / "rank_weights.json"
    save = f"$torch.save(@network.module.state_dict(), '{tmp_path}/rank' + os.environ['RANK'] + '.pt')"
    rank_weights.write_text(json.dumps({"finalize": [save, "$dist.destroy_process_group()"]}), encoding="utf-8")
    configs = [*json.loads(config_files(bundle, "train", "multi_gpu_train")), str(rank_weights)]
    overrides = {
        **tiny,
        "bundle_root": str(bundle_dir(bundle)),
        "dataset_dir": str(tmp_path / "data"),
        "output_dir": f"$'{tmp_path}/eval_rank' + os.environ['RANK']",
        "ckpt_dir": f"$'{tmp_path}/models_rank' + os.environ['RANK']",
        "epochs": 1,
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

    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
    # the best (here: the only) checkpoint is a plain state dict of the unwrapped network, written by rank 0 alone
    best = torch.load(tmp_path / "models_rank0" / "model.pt", weights_only=True)
    assert best.keys() == rank0.keys()
    for key in rank0:
        torch.testing.assert_close(best[key], rank0[key], rtol=0, atol=0, msg=key)
    assert list((tmp_path / "eval_rank0").glob("events.out.tfevents*")), "rank 0 wrote no TensorBoard statistics"
    assert not (tmp_path / "eval_rank1").exists() and not (tmp_path / "models_rank1").exists(), "rank 1 wrote files"
