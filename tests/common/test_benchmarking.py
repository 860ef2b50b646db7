"""The speed benchmark runs end to end on a tiny volume and network, and rewrites only its model-card section.

Speed figures are not asserted here: they come from the benchmark scripts (see the model cards).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from common import benchmarking

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "bundles" / "meningioma_agunet" / "docs" / "README.md"


def _outside_speed_section(text: str) -> tuple[str, str]:
    """The card before the Speed section's content and from the next section on."""
    start = text.index("## Speed\n") + len("## Speed\n")
    end = text.index("\n## ", start)
    return text[:start], text[end:]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """One run of the meningioma entry point on a tiny volume and network, CPU only, with a model-card copy."""
    from meningioma_agunet import benchmark

    root = tmp_path_factory.mktemp("benchmark")
    card = root / "README.md"
    shutil.copy(CARD, card)
    original = card.read_text()
    argv = [
        "--tiny",
        "--device", "cpu",
        "--repeats", "2",
        "--warmup", "0",
        "--no-cli",
        "--allow-cpu-training",
        "--train-cases", "2",
        "--train-epochs", "1",
        "--train-steps", "1",
        "--warmup-steps", "0",
        "--output", str(root / "out"),
        "--work-dir", str(root / "work"),
        "--update-model-card",
        "--model-card", str(card),
    ]  # fmt: skip
    benchmark.main(argv)
    return root, card, original


def test_json_has_every_row_with_positive_timings(tiny_run):
    root, _, _ = tiny_run
    results = json.loads((root / "out" / "benchmark.json").read_text())
    rows = {(r["category"], r["model"], r["pipeline"], r["device"]): r for r in results["rows"]}
    expected = {
        ("network_latency", "AGUNet-MS-DS", "ours", "cpu"): "median_s",
        ("network_latency", "DAGUNet-MS-DS", "ours", "cpu"): "median_s",
        ("network_latency", "AttentionUnet", "stock", "cpu"): "median_s",
        ("processing", "AGUNet-MS-DS", "ours", "cpu"): "loaded_s",
        ("processing", "AGUNet-MS-DS", "stock", "cpu"): "loaded_s",
        ("training_step", "AttentionUnet", "stock", "cpu"): "volumes_per_s",
        ("training_step", "AGUNet-MS-DS", "ours", "cpu"): "volumes_per_s",
        ("training_step", "DAGUNet-MS-DS", "ours", "cpu"): "volumes_per_s",
        ("training_end_to_end", "AGUNet-MS-DS", "ours", "cpu"): "volumes_per_s",
        ("training_end_to_end", "DAGUNet-MS-DS", "ours", "cpu"): "volumes_per_s",
    }
    assert set(expected) <= set(rows), sorted(set(expected) - set(rows))
    for key, metric in expected.items():
        row = rows[key]
        assert row["status"] == "ok", (key, row.get("reason"))
        assert row[metric] > 0, key
    for pipeline in ("ours", "stock"):
        row = rows[("processing", "AGUNet-MS-DS", pipeline, "cpu")]
        assert row["with_load_s"] > 0 and all(t > 0 for t in row["loaded_times_s"])
        assert row["outputs_on_input_grid"] and all(row["outputs_on_input_grid"].values())
    ours = rows[("processing", "AGUNet-MS-DS", "ours", "cpu")]
    assert set(ours["outputs_on_input_grid"]) == {"patient_prob.nii.gz", "patient_seg.nii.gz"}
    assert rows[("training_step", "AGUNet-MS-DS", "ours", "cpu")]["parameters"]["trainable"] > 0
    assert rows[("training_end_to_end", "AGUNet-MS-DS", "ours", "cpu")]["cached_cases"] == 2
    profile = results["profiles"]["cpu"]
    assert profile["network_s"] > 0 and profile["per_case_s"] > 0
    assert any(name.startswith("Spacingd") for name in profile["preprocessing_s"])
    assert any(name.startswith("Invertd") for name in profile["postprocessing_s"])
    assert results["command"].startswith("python -m meningioma_agunet.benchmark --tiny")
    assert "random" in results["weights"]


def test_markdown_tables_are_written(tiny_run):
    root, _, _ = tiny_run
    markdown = (root / "out" / "benchmark.md").read_text()
    assert "| Model | Parameters |" in markdown
    assert "| Measurement | Device |" in markdown
    assert "| Step | CPU (s) |" in markdown
    for name in ("AGUNet-MS-DS (ours)", "DAGUNet-MS-DS (ours)", "AttentionUnet (stock MONAI, fp32)"):
        assert name in markdown
    assert "python -m meningioma_agunet.benchmark --tiny" in markdown


def test_model_card_update_touches_only_the_marked_section(tiny_run):
    _, card, original = tiny_run
    updated = card.read_text()
    assert updated.count(benchmarking.MARKER_START) == 1 and updated.count(benchmarking.MARKER_END) == 1
    assert _outside_speed_section(updated) == _outside_speed_section(original)
    assert "python -m meningioma_agunet.benchmark --tiny" in updated
    # a second update replaces what is between the markers and nothing else
    benchmarking.update_model_card(card, "new body")
    again = card.read_text()
    start, end = again.index(benchmarking.MARKER_START), again.index(benchmarking.MARKER_END)
    assert again[start:end] == f"{benchmarking.MARKER_START}\nnew body\n"
    head, tail = updated.index(benchmarking.MARKER_START), updated.index(benchmarking.MARKER_END)
    assert again[:start] == updated[:head]
    assert again[end:] == updated[tail:]


def test_a_card_without_speed_section_gets_one_before_limitations():
    text = "# Card\n\n## Outputs\n\ntext\n\n## Limitations\n\n- one\n"
    updated = benchmarking.replace_marked_section(text, "body")
    assert updated.startswith("# Card\n\n## Outputs\n\ntext\n\n## Speed\n\n")
    assert updated.endswith("## Limitations\n\n- one\n")
    assert f"{benchmarking.MARKER_START}\nbody\n{benchmarking.MARKER_END}" in updated
    assert benchmarking.replace_marked_section(updated, "body") == updated


def test_synthetic_volume_has_the_requested_grid(tmp_path):
    info = benchmarking.write_synthetic_volume(
        tmp_path / "v.nii.gz", "meningioma", (40, 36, 30), (5.0, 5.0, 6.0), label_path=tmp_path / "l.nii.gz"
    )
    image = nib.load(tmp_path / "v.nii.gz")
    assert image.shape == (40, 36, 30)
    assert np.allclose(np.linalg.norm(image.affine[:3, :3], axis=0), [5.0, 5.0, 6.0])
    assert "".join(nib.aff2axcodes(image.affine)) == "LPS"
    assert info["shape"] == [40, 36, 30] and nib.load(tmp_path / "l.nii.gz").shape == (40, 36, 30)
    data = np.asarray(image.dataobj)
    assert data.max() > 0 and data[0, 0, 0] < 0.1 * data.max()  # a head in air


def test_measure_times_every_repeat():
    calls = []
    measurement = benchmarking.measure(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(measurement.times_s) == 3 and measurement.peak_gpu_mb is None
    assert measurement.median_s >= 0
