"""Both bundles in MONAI Label's stock ``monaibundle`` app, served by a real ``monailabel start_server`` on 127.0.0.1.

For each bundle the test copies MONAI Label's sample app out of the installed package (``monailabel apps --download``,
no network), puts the bundle (tiny settings, weights trained here) in the app's model folder, serves a studies folder of
phantoms (four labelled, one not) and calls the HTTP API as MONAI Label's 3D Slicer plugin does: ``/info/``,
``/infer/<bundle>`` (the label must lie on the image's grid and equal the bundle's own ``monai.bundle run`` mask) and
``/train/<bundle>`` (one epoch on the labelled studies, which writes new weights that ``/infer`` then uses).

These tests need MONAI Label and torchvision, which the main environment does not have: ``pyproject.toml`` keeps
pytest out of this folder, and ``.ci/run`` runs it in an environment of its own (see the README's "MONAI Label and 3D
Slicer" section): ``python -m pytest tests/monailabel``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
from bundle_helpers import TINY_MENINGIOMA, TINY_VESTIBULAR, bundle_dir, monai_bundle

from common.benchmarking.monailabel_load import Server, prepare_app, serve
from common.phantoms import write_meningioma_dataset, write_vestibular_dataset

#: Each bundle's phantom writer (seed) and tiny settings; ``val_interval`` 1 so that one epoch validates and saves.
BUNDLES = {
    "meningioma_agunet": (write_meningioma_dataset, 7, {**TINY_MENINGIOMA, "val_interval": 1}),
    "vestibular_spvpa": (write_vestibular_dataset, 11, {**TINY_VESTIBULAR, "val_interval": 1}),
}
#: The phantom that no study label comes with: the one ``/infer`` segments.
UNLABELLED = 0
#: Seconds to wait for one inference, for one training run.
INFER_TIMEOUT, TRAIN_TIMEOUT = 600, 900
#: Training request: one epoch on the CPU, one of the four labelled studies for validation.
TRAIN_REQUEST = {"max_epochs": 1, "device": "cpu", "val_split": 0.25, "multi_gpu": False}


@dataclass
class Served:
    """A server with one bundle: the app's copy of the bundle, the studies, the unlabelled study and its reference."""

    bundle: str
    server: Server
    bundle_path: Path
    studies: Path
    image_id: str
    reference_mask: Path

    @property
    def url(self) -> str:
        return self.server.url

    def infer(self, folder: Path, **params) -> Path:
        """``POST /infer/<bundle>?image=<id>``: the label file MONAI Label returns, saved in ``folder``."""
        response = requests.post(
            f"{self.url}/infer/{self.bundle}",
            params={"image": self.image_id, "output": "image"},
            data={"params": json.dumps({"device": "cpu", **params})},
            timeout=INFER_TIMEOUT,
        )
        assert response.status_code == 200, f"{response.status_code} {response.text[:2000]}\n{self.server.log_tail()}"
        label = folder / f"{self.image_id}_label.nii.gz"
        label.write_bytes(response.content)
        return label


def _studies(dataset: Path, root: Path) -> tuple[Path, str]:
    """A MONAI Label studies folder of ``dataset``'s training phantoms, all but one with its label (``labels/final``).

    Returns the folder and the id of the unlabelled study.
    """
    training = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))["training"]
    studies = root / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for i, case in enumerate(training):
        image = dataset / case["image"]
        shutil.copy(image, studies / image.name)
        if i != UNLABELLED:
            shutil.copy(dataset / case["label"], studies / "labels" / "final" / image.name)
    return studies, Path(training[UNLABELLED]["image"]).name.removesuffix(".nii.gz")


def _app(bundle: str, root: Path, dataset: Path, image: Path) -> tuple[Path, Path]:
    """The stock ``monaibundle`` app with ``bundle`` in ``model/``: tiny settings, weights trained here for 2 epochs.

    The copy's mask threshold is set to the 90th percentile of its tumour probability on ``image`` (inside the
    field of view), so that the mask ``/infer`` returns is neither empty nor full. Returns the app and the bundle's own
    mask of ``image`` at that threshold, made by ``monai.bundle run`` with the copy's inference config (post-processing
    included: the vestibular bundle drops specks and keeps the largest component).
    """
    app = prepare_app(root, {bundle: bundle_dir(bundle)})
    target = app / "model" / bundle
    shutil.rmtree(target / "models")  # the shipped weights: this test trains its own
    (target / "large_files.yml").write_text("large_files: []  # this test's own weights\n", encoding="utf-8")
    configs = target / "configs"
    _update_config(configs / "train.json", BUNDLES[bundle][2])
    _update_config(configs / "inference.json", BUNDLES[bundle][2])

    pretrain = root / "pretrain"
    monai_bundle(
        "run",
        "--config_file", str(configs / "train.json"),
        "--meta_file", str(configs / "metadata.json"),
        overrides={
            "bundle_root": str(target),
            "dataset_dir": str(dataset),
            "ckpt_dir": str(pretrain / "models"),
            "output_dir": str(pretrain / "eval"),
            "epochs": 2,
        },
    )  # fmt: skip
    (target / "models").mkdir()
    shutil.copy(pretrain / "models" / "model.pt", target / "models" / "model.pt")

    single = root / "reference" / "input"
    single.mkdir(parents=True)
    shutil.copy(image, single / image.name)
    prob = _bundle_inference(target, single, root / "reference" / "probability") / image.name.replace(
        ".nii.gz", "_prob.nii.gz"
    )
    values = np.asarray(nib.load(str(prob)).dataobj)
    assert values.max() > values[values > 0].min(), "the trained tiny network gives a constant probability"
    _update_config(configs / "inference.json", {"threshold": float(np.quantile(values[values > 0], 0.9))})
    mask = _bundle_inference(target, single, root / "reference" / "mask") / image.name.replace(".nii.gz", "_seg.nii.gz")
    return app, mask


def _bundle_inference(bundle_root: Path, dataset: Path, output: Path) -> Path:
    """``monai.bundle run`` of the bundle's inference config on ``dataset``; returns ``output``."""
    configs = bundle_root / "configs"
    monai_bundle(
        "run",
        "--config_file", str(configs / "inference.json"),
        "--meta_file", str(configs / "metadata.json"),
        # float32 probabilities, for the exact 90th percentile
        overrides={
            "bundle_root": str(bundle_root), "dataset_dir": str(dataset), "output_dir": str(output),
            "quantize_prob": False,
        },
    )  # fmt: skip
    return output


def _update_config(config: Path, values: dict) -> None:
    content = json.loads(config.read_text(encoding="utf-8"))
    content.update(values)
    config.write_text(json.dumps(content, indent=4), encoding="utf-8")


@pytest.fixture(scope="module", params=list(BUNDLES))
def server(request, tmp_path_factory) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as patch:
        # one CPU thread in every process started here: the sliding window's many small steps slow down many times
        # over when OpenMP threads compete for the cores with other work on the machine
        patch.setenv("OMP_NUM_THREADS", "1")
        yield from _serve(request.param, tmp_path_factory)


def _serve(bundle: str, tmp_path_factory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp(f"monailabel_{bundle}")
    write, seed, _ = BUNDLES[bundle]
    write(root / "phantoms", num_training=5, num_test=0, seed=seed, spacing_scale=4.0)
    studies, image_id = _studies(root / "phantoms", root)
    app, reference = _app(bundle, root, root / "phantoms", studies / f"{image_id}.nii.gz")
    with serve(app, studies, [bundle], root / "server.log") as server:
        yield Served(bundle, server, app / "model" / bundle, studies, image_id, reference)


def test_info_lists_the_bundle_for_inference_and_training(server):
    info = requests.get(f"{server.url}/info/", timeout=30).json()
    model = info["models"][server.bundle]
    assert model["type"] == "segmentation" and model["dimension"] == 3
    assert set(model["labels"].values()) == {1}
    assert server.bundle in info["trainers"]
    assert info["datastore"]["total"] == 5 and info["datastore"]["completed"] == 4


def _assert_on_the_image_grid(label_file: Path, image_file: Path) -> np.ndarray:
    label, image = nib.load(str(label_file)), nib.load(str(image_file))
    assert label.shape == image.shape
    np.testing.assert_allclose(label.affine, image.affine, atol=1e-4)
    values = np.asarray(label.dataobj)
    assert set(np.unique(values)) <= {0, 1}
    return values


def test_infer_returns_the_bundle_mask_on_the_image_grid(server, tmp_path):
    image = server.studies / f"{server.image_id}.nii.gz"
    label = _assert_on_the_image_grid(server.infer(tmp_path, model_filename="model.pt"), image)
    assert 0 < label.sum() < label.size

    # the mask of the bundle's own inference (same image, weights, threshold and post-processing)
    mask = np.asarray(nib.load(str(server.reference_mask)).dataobj) > 0
    agreement = np.mean(label == mask)
    assert agreement > 0.999, f"MONAI Label's mask agrees with the bundle's on {agreement:.2%} of the voxels"


def test_train_runs_one_epoch_and_infer_uses_its_weights(server, tmp_path):
    weights = server.bundle_path / "models" / "model.pt"
    before = weights.read_bytes()
    response = requests.post(f"{server.url}/train/{server.bundle}", json=TRAIN_REQUEST, timeout=60)
    assert response.status_code == 200, f"{response.status_code} {response.text[:2000]}\n{server.server.log_tail()}"

    deadline = time.monotonic() + TRAIN_TIMEOUT
    while True:
        status = requests.get(f"{server.url}/train/", timeout=30).json()
        if status.get("status") not in ("SUBMITTED", "RUNNING") or time.monotonic() > deadline:
            break
        time.sleep(2)
    details = "\n".join(status.get("details", []))
    assert status.get("status") == "DONE", f"{status.get('status')}\n{details}\n{server.server.log_tail()}"
    assert "Training Finished" in details, details

    # training read the labelled studies, validated once and saved new best weights over the old ones
    assert weights.read_bytes() != before
    assert (server.bundle_path / "models" / "last.pt").is_file()
    assert (server.bundle_path / "eval" / "train_losses.jsonl").read_text(encoding="utf-8").splitlines()

    image = server.studies / f"{server.image_id}.nii.gz"
    _assert_on_the_image_grid(server.infer(tmp_path, model_filename="model.pt"), image)
