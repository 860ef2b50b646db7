"""``pack-bundle``: the zip holds everything its inference needs, proven by running it where the project is absent.

The unpacked bundle runs with ``python -S`` (no ``site``: the editable install of this project, a ``.pth`` hook in
site-packages, is never loaded) and ``PYTHONPATH`` set to site-packages only (the third-party packages), from the
unpacked folder outside the repository. The same interpreter and environment cannot ``import common`` from an empty
folder, so the successful run can only have used the packages inside the zip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import torch
import yaml
from bundle_helpers import REPO, SCHEMA, TINY_MENINGIOMA, bundle_dir, sha256

from common.packaging import main, required_packages
from common.phantoms import write_meningioma_dataset
from meningioma_agunet.network import AGUNet

BUNDLE = "meningioma_agunet"


def _isolated(*args: str, cwd, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -S ARGS`` with only site-packages (third-party code) on the path, in ``cwd``."""
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "PYTHONPATH": os.pathsep.join(paths)}
    cli = [sys.executable, "-S", *args]
    return subprocess.run(
        cli, cwd=cwd, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=timeout, check=False
    )


def test_required_packages_are_common_and_the_bundles_own():
    assert required_packages(bundle_dir("meningioma_agunet")) == ["common", "meningioma_agunet"]
    assert required_packages(bundle_dir("vestibular_spvpa")) == ["common", "vestibular_spvpa"]


def test_packed_bundle_runs_inference_without_the_repository(tmp_path):
    # a copy of the bundle folder with tiny weights instead of the shipped ones (so their recorded hash goes too)
    source = tmp_path / "source" / BUNDLE
    shutil.copytree(bundle_dir(BUNDLE), source, ignore=shutil.ignore_patterns("data", "eval", "*.pt", "*.ts"))
    (source / "large_files.yml").write_text("large_files: []\n", encoding="utf-8")
    (source / "models").mkdir(exist_ok=True)
    torch.save(AGUNet(filters=TINY_MENINGIOMA["filters"]).state_dict(), source / "models" / "model.pt")
    main([str(source), "--output", str(tmp_path / "dist"), "--schema", str(SCHEMA)])
    version = json.loads((source / "configs" / "metadata.json").read_text(encoding="utf-8"))["version"]
    archive = tmp_path / "dist" / f"{BUNDLE}_v{version}.zip"

    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(unpacked)
    bundle = (unpacked / BUNDLE).resolve()
    assert sorted(p.name for p in unpacked.iterdir()) == [BUNDLE]
    assert {p.name for p in bundle.iterdir()} == {
        "configs",
        "docs",
        "models",
        "LICENSE",
        "large_files.yml",
        "common",
        "meningioma_agunet",
    }
    assert not list(bundle.rglob("__pycache__"))
    assert REPO not in bundle.resolve().parents
    [entry] = yaml.safe_load((bundle / "large_files.yml").read_text(encoding="utf-8"))["large_files"]
    assert entry["path"] == "models/model.pt" and entry["hash_type"] == "sha256"
    assert entry["hash_val"] == sha256(bundle / "models" / "model.pt")
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["version"] in metadata["changelog"]
    assert "mri-tumour-bundles" not in metadata["required_packages_version"]

    # the control: this interpreter and environment do not see the project's packages
    empty = tmp_path / "empty"
    empty.mkdir()
    control = _isolated("-c", "import common", cwd=empty)
    assert control.returncode != 0 and "No module named 'common'" in control.stderr
    where = _isolated("-c", "import common, meningioma_agunet as m; print(common.__file__, m.__file__)", cwd=bundle)
    assert where.stdout.split() == [str(bundle / p / "__init__.py") for p in ("common", "meningioma_agunet")]

    # MONAI's model-zoo check of large_files.yml, offline: the weights are present and match their sha256
    verified = _isolated("-m", "monai.bundle", "download_large_files", "--bundle_path", ".", cwd=bundle)
    assert verified.returncode == 0 and "skipped downloading" in verified.stdout + verified.stderr

    images = tmp_path / "images"
    write_meningioma_dataset(images, num_training=0, num_test=1, seed=5, spacing_scale=4.0)
    cli = ["-m", "monai.bundle", "run", "--config_file", "configs/inference.json"]
    cli += ["--dataset_dir", str(images / "imagesTs"), "--output_dir", str(tmp_path / "out"), "--num_workers", "0"]
    for key in ("filters", "spatial_size"):
        cli += [f"--{key}", json.dumps(TINY_MENINGIOMA[key])]
    run = _isolated(*cli, cwd=bundle)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-6000:]
    summary = json.loads((tmp_path / "out" / "inference_summary.json").read_text(encoding="utf-8"))
    assert len(summary["succeeded"]) == 1 and not summary["failed"]
    assert list((tmp_path / "out").glob("*_seg.nii.gz"))
