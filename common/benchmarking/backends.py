"""Network latency on the CPU in each inference backend: eager fp32, eager bf16 autocast, TorchScript, ONNX Runtime.

The same network (same weights) runs on the same input in every backend, so the rows differ only by the backend:

- ``eager_fp32``: the ``nn.Module`` in evaluation mode under ``torch.no_grad`` (what the bundles' configs run);
- ``eager_bf16``: the same under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (fast only where the CPU has bf16
  instructions, e.g. AVX512-BF16 or AMX; the logits differ from fp32 by the bf16 rounding);
- ``torchscript``: ``torch.jit.script`` (as ``python -m monai.bundle ckpt_export`` scripts the network), then
  ``torch.jit.freeze`` and ``torch.jit.optimize_for_inference`` (batch norm folded into the convolutions);
- ``onnxruntime``: ``monai.networks.utils.convert_to_onnx`` (``torch.onnx.export``, as ``python -m monai.bundle
  onnx_export`` runs it, with the README's input and output names and dynamic batch axis), run by an ONNX Runtime
  ``InferenceSession`` on the ``CPUExecutionProvider`` with every graph optimisation on and as many intra-op threads
  as torch uses.

Each row also gives the one-off preparation (scripting and optimisation, or export and session creation: paid once
when the model is loaded) and the largest absolute difference of the logits from eager fp32, so that a fast backend
that computes something else shows.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from common.benchmarking.timing import measure

__all__ = ["BACKENDS", "BACKEND_LABELS", "FP32_BACKENDS", "REFERENCE_BACKEND", "prepare_backend", "time_cpu_backend"]

#: The backends in the order of the tables, with their labels.
BACKEND_LABELS = {
    "eager_fp32": "eager fp32",
    "eager_bf16": "eager, bf16 autocast",
    "torchscript": "TorchScript (scripted, frozen, optimize_for_inference)",
    "onnxruntime": "ONNX Runtime (CPUExecutionProvider, all graph optimisations)",
}
BACKENDS = tuple(BACKEND_LABELS)
#: The backends that compute in fp32 (the candidates for the fastest exact backend).
FP32_BACKENDS = ("eager_fp32", "torchscript", "onnxruntime")
#: The backend the speed-ups and differences refer to.
REFERENCE_BACKEND = "eager_fp32"

#: Input and output names and the dynamic batch axis of the README's ``onnx_export`` command.
_ONNX_KWARGS = {
    "input_names": ["image"],
    "output_names": ["pred"],
    "dynamic_axes": {"image": {0: "batch"}, "pred": {0: "batch"}},
}


def _eager(network: torch.nn.Module, dtype: torch.dtype | None) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(inputs: torch.Tensor) -> torch.Tensor:
        autocast = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with torch.no_grad(), autocast:
            return network(inputs)

    return forward


def _torchscript(network: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\..*` is deprecated", category=DeprecationWarning)
        scripted = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(network.eval())))

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return scripted(inputs)

    return forward


def _onnxruntime(
    network: torch.nn.Module, inputs: torch.Tensor, path: Path, threads: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        import onnxruntime
    except ImportError as error:
        raise RuntimeError(f"ONNX Runtime is not installed ({error}): pip install -e '.[onnx]'") from None
    from monai.networks.utils import convert_to_onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    # the exporter prints its progress (stdout carries the tables) and warns that the README's dynamic_axes is legacy
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="# 'dynamic_axes' is not recommended", category=UserWarning)
        convert_to_onnx(network.eval(), [inputs], filename=str(path), **_ONNX_KWARGS)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run([output_name], {input_name: inputs.numpy()})[0])

    return forward


def prepare_backend(
    backend: str, network: torch.nn.Module, inputs: torch.Tensor, work_dir: str | Path
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``network`` as ``backend`` runs it on the CPU: a function of the input batch returning the logits.

    Args:
        backend: one of :data:`BACKENDS` (see the module's docstring).
        network: the network in evaluation mode, on the CPU (not modified).
        inputs: an example input ``(B, C, *spatial)`` (ONNX export traces it).
        work_dir: where the ONNX file is written.

    Raises:
        ValueError: an unknown backend.
        RuntimeError: ONNX Runtime missing (``onnxruntime``); export or scripting errors propagate as they are.
    """
    if backend == "eager_fp32":
        return _eager(network, None)
    if backend == "eager_bf16":
        return _eager(network, torch.bfloat16)
    if backend == "torchscript":
        return _torchscript(network)
    if backend == "onnxruntime":
        return _onnxruntime(network, inputs, Path(work_dir) / "model.onnx", torch.get_num_threads())
    raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}.")


def time_cpu_backend(
    backend: str,
    network: torch.nn.Module,
    inputs: torch.Tensor,
    *,
    work_dir: str | Path,
    reference: torch.Tensor | None = None,
    repeats: int = 3,
    warmup: int = 1,
) -> dict[str, Any]:
    """Latency of one forward pass of ``network`` in ``backend`` on the CPU.

    One untimed call checks the logits against ``reference`` (eager fp32 logits of the same input; ``None``: no
    check), then ``warmup`` untimed and ``repeats`` timed calls follow.

    Args:
        backend: one of :data:`BACKENDS`.
        network: the network (moved to the CPU, evaluation mode; otherwise not modified).
        inputs: the input batch ``(B, C, *spatial)`` on the CPU, e.g.
            :func:`~common.benchmarking.synthetic.random_input`.
        work_dir: where the ONNX file is written.
        reference: logits to compare with.
        repeats: timed calls (default 3).
        warmup: untimed calls after the check (default 1).

    Returns:
        ``median_s``, ``times_s``, ``cpu_s`` (CPU time of the process, all threads), ``prepare_s`` (scripting or
        export and session creation), ``max_abs_diff_vs_eager_fp32``, the backend, its label, the torch (and ONNX
        Runtime intra-op) threads and the input shape.
    """
    network = network.to("cpu").eval()
    start = time.perf_counter()
    forward = prepare_backend(backend, network, inputs, work_dir)
    prepare_s = time.perf_counter() - start
    logits = forward(inputs).float()
    difference = None if reference is None else float((logits - reference.float()).abs().max())
    measurement = measure(lambda: forward(inputs), device="cpu", repeats=repeats, warmup=warmup)
    return {
        **measurement.to_dict(),
        "backend": backend,
        "label": BACKEND_LABELS[backend],
        "prepare_s": prepare_s,
        "max_abs_diff_vs_eager_fp32": difference,
        "threads": torch.get_num_threads(),
        "input_shape": list(inputs.shape),
    }
