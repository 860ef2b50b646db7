"""The CPU backends of the model side by side: every row timed, failures and skips reported with their reason."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from common.benchmarking import backends, bundle
from common.benchmarking.backends import BACKEND_LABELS, BACKENDS, FP32_BACKENDS, prepare_backend
from common.inference.precision import has_native_bf16

#: Logits of an fp32 backend against eager fp32 (the export tests of the bundles use the same bound).
ATOL = 1e-4


def test_json_and_markdown_have_every_cpu_backend(tiny_run):
    root, _, _ = tiny_run
    results = json.loads((root / "out" / "benchmark.json").read_text(encoding="utf-8"))
    rows = {r["backend"]: r for r in results["rows"] if r["category"] == "cpu_backend"}
    assert list(rows) == list(BACKENDS)
    if not has_native_bf16("cpu"):  # this CPU would emulate bf16: the row says so instead of a time
        assert rows.pop("eager_bf16")["reason"].startswith("skipped: this CPU has no bf16 instructions")
    for backend, row in rows.items():
        assert (row["model"], row["pipeline"], row["device"]) == ("AGUNet-MS-DS", "ours", "cpu")
        assert row["status"] == "ok", (backend, row.get("reason"))
        assert row["median_s"] > 0 and all(t > 0 for t in row["times_s"]) and row["speedup_vs_eager_fp32"] > 0
        assert row["threads"] == torch.get_num_threads() and row["input_shape"] == [1, 1, 32, 32, 32]
    assert rows["eager_fp32"]["speedup_vs_eager_fp32"] == 1.0
    assert all(rows[backend]["max_abs_diff_vs_eager_fp32"] < ATOL for backend in FP32_BACKENDS)
    markdown = (root / "out" / "benchmark.md").read_text(encoding="utf-8")
    assert "**CPU backends: network latency (s)**" in markdown
    assert "| Backend | Latency (s) | CPU time (s) | Speed-up vs eager fp32 |" in markdown
    assert all(f"| {label} |" in markdown for label in BACKEND_LABELS.values())
    assert "Fastest fp32 backend on the CPU: " in markdown


class _Unscriptable(nn.Module):
    """A convolution behind a Python callable attribute, which ``torch.jit.script`` cannot compile."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3, padding=1)
        self.apply_conv = lambda x: self.conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_conv(x)


def _tiny_context(tmp_path) -> SimpleNamespace:
    """What ``_cpu_backend_rows`` reads of a benchmark run, for ``_Unscriptable`` at 8 x 8 x 8."""
    torch.save(_Unscriptable().state_dict(), tmp_path / "model.pt")
    return SimpleNamespace(
        spec=SimpleNamespace(model="tiny"),
        options=SimpleNamespace(repeats=1, warmup=0),
        ckpt=tmp_path / "model.pt",
        network_shape=[8, 8, 8],
        latency_batch=1,
        work_dir=tmp_path,
    )


def test_failing_backends_are_reported_with_their_reason(tmp_path, monkeypatch):
    def unsupported(*args, **kwargs):
        raise RuntimeError("export unsupported")

    monkeypatch.setattr(backends, "_onnxruntime", unsupported)
    monkeypatch.setattr(bundle, "has_native_bf16", lambda device: True)  # time the bf16 row on any CPU
    rows = {row["backend"]: row for row in bundle._cpu_backend_rows(_tiny_context(tmp_path), _Unscriptable)}
    assert [rows[b]["status"] for b in BACKENDS] == ["ok", "ok", "failed", "failed"]
    assert rows["onnxruntime"]["reason"] == "failed: RuntimeError: export unsupported"
    assert rows["torchscript"]["reason"].startswith("failed: ")
    assert rows["eager_bf16"]["speedup_vs_eager_fp32"] > 0 and "speedup_vs_eager_fp32" not in rows["torchscript"]
    # the logits are compared with eager fp32: bf16 rounding shows, fp32 is the reference itself
    assert rows["eager_fp32"]["max_abs_diff_vs_eager_fp32"] == 0 < rows["eager_bf16"]["max_abs_diff_vs_eager_fp32"]


def test_bf16_row_is_skipped_where_the_cpu_would_emulate_bf16(tmp_path, monkeypatch):
    """Emulated bf16 takes minutes per volume (model card, Speed): the row says why it has no time."""
    monkeypatch.setattr(bundle, "has_native_bf16", lambda device: False)
    rows = {row["backend"]: row for row in bundle._cpu_backend_rows(_tiny_context(tmp_path), _Unscriptable)}
    assert [rows[b]["status"] for b in BACKENDS] == ["ok", "skipped", "failed", "ok"]
    assert "median_s" not in rows["eager_bf16"] and "speedup_vs_eager_fp32" not in rows["eager_bf16"]
    assert rows["eager_bf16"]["reason"].startswith("skipped: this CPU has no bf16 instructions (AVX512-BF16 or AMX)")
    assert rows["onnxruntime"]["speedup_vs_eager_fp32"] > 0


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend must be one of"):
        prepare_backend("tensorrt", nn.Identity(), torch.zeros(1), ".")
