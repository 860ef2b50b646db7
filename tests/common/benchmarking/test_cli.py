"""The speed benchmark runs end to end on a tiny volume and network, and rewrites only its model-card section.

Speed figures are not asserted here: they come from the benchmark scripts (see the model cards).
"""

from __future__ import annotations

import json

from common import benchmarking


def _outside_speed_section(text: str) -> tuple[str, str]:
    """The card before the Speed section's content and from the next section on."""
    start = text.index("## Speed\n") + len("## Speed\n")
    end = text.index("\n## ", start)
    return text[:start], text[end:]


def test_json_has_every_row_with_positive_timings(tiny_run):
    root, _, _ = tiny_run
    results = json.loads((root / "out" / "benchmark.json").read_text(encoding="utf-8"))
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
    parameters = rows[("training_step", "AGUNet-MS-DS", "ours", "cpu")]["parameters"]
    assert 0 < parameters["trainable"] < parameters["with_bn_statistics"]
    assert rows[("training_end_to_end", "AGUNet-MS-DS", "ours", "cpu")]["cached_cases"] == 2
    profile = results["profiles"]["cpu"]
    assert profile["network_s"] > 0 and profile["per_case_s"] > 0
    assert any(name.startswith("Spacingd") for name in profile["preprocessing_s"])
    assert any(name.startswith("Invertd") for name in profile["postprocessing_s"])
    assert results["command"].startswith("python -m meningioma_agunet.benchmark --tiny")
    assert "random" in results["weights"]


def test_markdown_tables_are_written(tiny_run):
    root, _, _ = tiny_run
    markdown = (root / "out" / "benchmark.md").read_text(encoding="utf-8")
    assert "| Model | Parameters |" in markdown
    assert "| Measurement | Device |" in markdown
    assert "| Step | CPU (s) |" in markdown
    for name in ("AGUNet-MS-DS (ours)", "DAGUNet-MS-DS (ours)", "AttentionUnet (stock MONAI, fp32)"):
        assert name in markdown
    assert "python -m meningioma_agunet.benchmark --tiny" in markdown


def test_model_card_update_touches_only_the_marked_section(tiny_run):
    _, card, original = tiny_run
    updated = card.read_text(encoding="utf-8")
    assert updated.count(benchmarking.MARKER_START) == 1 and updated.count(benchmarking.MARKER_END) == 1
    assert _outside_speed_section(updated) == _outside_speed_section(original)
    assert "python -m meningioma_agunet.benchmark --tiny" in updated
    # a second update replaces what is between the markers and nothing else
    benchmarking.update_model_card(card, "new body")
    again = card.read_text(encoding="utf-8")
    start, end = again.index(benchmarking.MARKER_START), again.index(benchmarking.MARKER_END)
    assert again[start:end] == f"{benchmarking.MARKER_START}\nnew body\n"
    head, tail = updated.index(benchmarking.MARKER_START), updated.index(benchmarking.MARKER_END)
    assert again[:start] == updated[:head]
    assert again[end:] == updated[tail:]
