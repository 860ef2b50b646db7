"""MONAI Label under load: both bundles with their shipped weights in a real server, concurrent ``/infer`` clients.

Run in the MONAI Label environment (README, "MONAI Label and 3D Slicer")::

    python -m common.benchmarking.monailabel_load --requests 20 --clients 4

It writes a studies folder of unseen phantoms (two per bundle), segments them with each bundle's own
``python -m monai.bundle run`` (the reference masks), copies MONAI Label's stock ``monaibundle`` app out of the
installed package with both bundles and their shipped weights in its model folder, starts ``monailabel start_server``
on 127.0.0.1 and sends ``--requests`` ``/infer`` requests from ``--clients`` threads, alternating bundles and studies.
Every response must be a mask on its study's grid that matches the reference mask; the server's resident memory (its
process and its children) is sampled throughout. Then it uploads malformed files (a truncated NIfTI, a text file
named ``.nii.gz``), which must be refused with an error that says what is wrong, after which the server must still
answer. It prints the figures (peak RSS against the number of requests answered, latency, agreement) and writes them
to ``<output>/monailabel_load.{json,md}``; the exit status is 1 when a check fails.

:func:`prepare_app`, :func:`serve` and :func:`stop` are also what ``tests/monailabel`` starts its servers with.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import psutil
import requests

from common.benchmarking.report import markdown_table
from common.console import echo
from common.phantoms import write_meningioma_dataset, write_vestibular_dataset
from common.phantoms.bad_inputs import write_bad_inputs
from common.training.bundle_runner import run_bundle_process
from common.transforms.check_image import UNREADABLE

__all__ = ["Server", "monailabel_command", "prepare_app", "run_load", "serve", "stop"]

REPO = Path(__file__).resolve().parents[2]
#: Seconds to wait for the server to answer its first ``/info/``.
START_TIMEOUT = 300
#: Each bundle's phantom writer and a seed whose test section no training saw (the README samples' seeds).
PHANTOMS: dict[str, tuple[Callable[..., Path], int]] = {
    "meningioma_agunet": (write_meningioma_dataset, 2021),
    "vestibular_spvpa": (write_vestibular_dataset, 2019),
}
#: Files of a bundle that the app's model folder gets (README, "MONAI Label and 3D Slicer").
BUNDLE_FILES = ("configs", "docs", "models", "LICENSE", "large_files.yml")


def monailabel_command(*args: str) -> list[str]:
    """The ``monailabel`` command of this environment (a shell script that runs ``MONAILABEL_PYEXE``)."""
    return [str(Path(sys.executable).parent / "monailabel"), *args]


def monailabel_env() -> dict[str, str]:
    return {**os.environ, "MONAILABEL_PYEXE": sys.executable, "PYTHONUNBUFFERED": "1"}


def prepare_app(root: Path, bundles: Mapping[str, Path]) -> Path:
    """MONAI Label's stock ``monaibundle`` app (copied from the installed package, no network) in ``root/apps``,
    with each bundle folder of ``bundles`` (name -> folder) copied into its ``model/`` folder; returns the app."""
    subprocess.run(
        monailabel_command("apps", "--download", "--name", "monaibundle", "--output", str(root / "apps")),
        check=True,
        env=monailabel_env(),
        capture_output=True,
        timeout=120,
    )
    app = root / "apps" / "monaibundle"
    if not (app / "main.py").is_file():
        raise RuntimeError(f"monailabel apps --download wrote no app in {app}")
    for name, folder in bundles.items():
        target = app / "model" / name
        target.mkdir(parents=True)
        for item in BUNDLE_FILES:
            source = folder / item
            if source.is_dir():
                shutil.copytree(source, target / item, ignore=shutil.ignore_patterns("__pycache__"))
            elif source.is_file():
                shutil.copy(source, target / item)
    return app


@dataclass
class Server:
    """A running ``monailabel start_server``: its URL, process (a session leader) and log file."""

    url: str
    process: subprocess.Popen
    log: Path

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]

    def rss_bytes(self) -> int:
        """Resident memory of the server process and all its children (inference may run in child processes)."""
        try:
            root = psutil.Process(self.process.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):  # a child that ended meanwhile
                total += process.memory_info().rss
        return total


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"monailabel start_server exited ({server.process.returncode}):\n{server.log_tail()}")
        try:
            if requests.get(f"{server.url}/info/", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    raise RuntimeError(f"monailabel start_server did not answer in {START_TIMEOUT} s:\n{server.log_tail()}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (the server and any training it started), SIGKILL after 30 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@contextmanager
def serve(
    app: Path, studies: Path, models: Sequence[str], log: Path, env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """``monailabel start_server`` of ``app`` over ``studies`` with ``models`` on a free port of 127.0.0.1, offline
    (bundles from the model folder, no SAM 2); yields the server once it answers, stops it on exit."""
    port = _free_port()
    command = monailabel_command(
        "start_server",
        "--app", str(app),
        "--studies", str(studies),
        "--conf", "models", ",".join(models),
        "--conf", "zoo_source", "github",  # bundles from the model folder, no model-zoo listing (offline)
        "--conf", "sam2", "false",  # the stock app's SAM 2 models download weights
        "--host", "127.0.0.1",
        "--port", str(port),
    )  # fmt: skip
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
            env={**monailabel_env(), **dict(env or {})},
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_for(server)
        yield server
    finally:
        stop(process)


@dataclass(frozen=True)
class Study:
    """A study of the load test: its bundle, MONAI Label id, image and the bundle's own mask of it."""

    bundle: str
    image_id: str
    image: Path
    reference: Path


def write_studies(root: Path, per_bundle: int = 2) -> tuple[Path, list[Study]]:
    """``root/studies`` with ``per_bundle`` unseen phantoms of each bundle, and each bundle's ``monai.bundle run``
    masks of them (``root/reference/<bundle>``); returns the folder and the studies, bundles alternating."""
    studies = root / "studies"
    studies.mkdir(parents=True)
    by_bundle = []
    for bundle, (write, seed) in PHANTOMS.items():
        dataset = root / "phantoms" / bundle
        write(dataset, num_training=0, num_test=per_bundle, seed=seed)
        reference = root / "reference" / bundle
        overrides = {
            "bundle_root": str(REPO / "bundles" / bundle),
            "dataset_dir": str(dataset),
            "output_dir": str(reference),
        }
        proc = run_bundle_process(REPO / "bundles" / bundle / "configs" / "inference.json", overrides)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(proc.args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        cases = []
        for image in sorted((dataset / "imagesTs").glob("*.nii.gz")):
            image_id = image.name.removesuffix(".nii.gz")
            shutil.copy(image, studies / image.name)
            cases.append(Study(bundle, image_id, studies / image.name, reference / f"{image_id}_seg.nii.gz"))
        by_bundle.append(cases)
    return studies, [study for pair in zip(*by_bundle) for study in pair]


def _infer(server: Server, model: str, timeout: float, **request: Any) -> requests.Response:
    """``POST /infer/<model>`` as MONAI Label's 3D Slicer plugin sends it (``image=<id>`` or an uploaded ``file``)."""
    files = {"file": request.pop("file")} if "file" in request else None
    return requests.post(
        f"{server.url}/infer/{model}",
        params={"output": "image", **request},
        data={"params": json.dumps({"device": "cpu", "model_filename": "model.pt"})},
        files=files,
        timeout=timeout,
    )


class _MemorySampler(threading.Thread):
    """Samples the server's resident memory every ``interval`` seconds; ``peak`` is the largest value so far."""

    def __init__(self, server: Server, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.server, self.interval = server, interval
        self.peak = server.rss_bytes()
        self.finished = threading.Event()

    def run(self) -> None:
        while not self.finished.wait(self.interval):
            self.peak = max(self.peak, self.server.rss_bytes())


def _agreement(response: Path, study: Study) -> dict[str, Any]:
    """How the returned mask fits its study: grid, values, agreement and Dice with the bundle's own mask."""
    mask, image = nib.load(str(response)), nib.load(str(study.image))
    on_grid = mask.shape == image.shape and np.allclose(mask.affine, image.affine, atol=1e-4)
    values = np.asarray(mask.dataobj)
    reference = np.asarray(nib.load(str(study.reference)).dataobj) > 0
    if not on_grid:
        return {"on_grid": False, "binary": None, "agreement": None, "dice_vs_bundle": None}
    ours = values > 0
    both = ours.sum() + reference.sum()
    return {
        "on_grid": True,
        "binary": set(np.unique(values).tolist()) <= {0, 1},
        "agreement": float(np.mean(ours == reference)),
        "dice_vs_bundle": float(2 * np.logical_and(ours, reference).sum() / both) if both else 1.0,
    }


def load(server: Server, studies: Sequence[Study], num_requests: int, clients: int, out: Path) -> dict[str, Any]:
    """``num_requests`` ``/infer`` requests from ``clients`` threads over ``studies`` in turn (a bounded queue:
    every thread takes the next request until none is left); each response is saved in ``out`` and checked."""
    out.mkdir(parents=True, exist_ok=True)
    jobs = iter(enumerate(itertools.islice(itertools.cycle(studies), num_requests), start=1))
    lock = threading.Lock()
    records: list[dict[str, Any]] = []
    sampler = _MemorySampler(server)
    rss_at_start = sampler.peak

    def client(number: int) -> None:
        while True:
            with lock:
                job = next(jobs, None)
            if job is None:
                return
            index, study = job
            start = time.perf_counter()
            try:
                response = _infer(server, study.bundle, timeout=900, image=study.image_id)
                status, text = response.status_code, response.text[:500] if response.status_code != 200 else ""
            except requests.RequestException as error:
                response, status, text = None, None, repr(error)
            seconds = time.perf_counter() - start
            record = {"request": index, "client": number, "bundle": study.bundle, "image": study.image_id,
                      "status": status, "seconds": round(seconds, 2), "error": text}  # fmt: skip
            if status == 200:
                saved = out / f"{index:02d}_{study.image_id}_label.nii.gz"
                saved.write_bytes(response.content)
                record.update(_agreement(saved, study))
            with lock:
                record["answered"] = len(records) + 1
                rss = server.rss_bytes()
                record["rss_mb"] = round(rss / 2**20, 1)
                record["peak_rss_mb"] = round(max(sampler.peak, rss) / 2**20, 1)
                records.append(record)
                progress = f"[{record['answered']}/{num_requests}] {study.bundle} {study.image_id}: {status}"
                memory = f"RSS {record['rss_mb']:.0f} MB (peak {record['peak_rss_mb']:.0f} MB)"
                echo(f"{progress} in {seconds:.1f} s, {memory}", file=sys.stderr)

    sampler.start()
    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(number,)) for number in range(1, clients + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    sampler.finished.set()
    sampler.join()
    return {"records": records, "wall_s": round(wall, 1), "rss_at_start_mb": round(rss_at_start / 2**20, 1),
            "peak_rss_mb": round(sampler.peak / 2**20, 1)}  # fmt: skip


def malformed_uploads(server: Server, model: str, folder: Path) -> list[dict[str, Any]]:
    """Upload a truncated NIfTI and a text file named ``.nii.gz`` to ``/infer/<model>``; after each, the server must
    still answer ``/info/``. Returns each upload's status, error text and whether the server answered after."""
    write_bad_inputs(folder)
    results = []
    for name in ("truncated.nii.gz", "not_an_image.nii.gz"):
        content = (folder / name).read_bytes()
        response = _infer(server, model, timeout=300, file=(name, content))
        alive = requests.get(f"{server.url}/info/", timeout=60).status_code == 200
        results.append({"upload": name, "bytes": len(content), "status": response.status_code,
                        "error": response.text[:500], "server_up_after": alive})  # fmt: skip
    return results


#: Largest accepted growth of the peak RSS over the second half of the requests, as a fraction of the peak at half way.
MAX_GROWTH = 0.2
#: Smallest accepted voxel agreement between a returned mask and the bundle's own mask of the study.
MIN_AGREEMENT = 0.999


def checks(result: Mapping[str, Any]) -> list[str]:
    """Every check of :func:`run_load`'s result that failed (empty when all passed)."""
    problems = []
    records = result["load"]["records"]
    if len(records) != result["settings"]["requests"]:
        problems.append(f"{len(records)} of {result['settings']['requests']} requests answered")
    for r in records:
        if r["status"] != 200:
            problems.append(f"request {r['request']} ({r['bundle']} {r['image']}): {r['status']} {r['error']}")
        elif not (r["on_grid"] and r["binary"] and r["agreement"] >= MIN_AGREEMENT):
            problems.append(f"request {r['request']} ({r['bundle']} {r['image']}): mask {r}")
    half = [r["peak_rss_mb"] for r in records if r["answered"] <= len(records) // 2]
    if half and records and max(r["peak_rss_mb"] for r in records) > max(half) * (1 + MAX_GROWTH):
        problems.append(f"peak RSS grew by more than {MAX_GROWTH:.0%} over the second half of the requests")
    for upload in result["malformed"]:
        if upload["status"] != 422 or UNREADABLE not in upload["error"] or not upload["server_up_after"]:
            problems.append(
                f"malformed upload {upload['upload']}: expected 422 with {UNREADABLE!r} and the server up: {upload}"
            )
    if not result["after_malformed"]["on_grid"] or result["after_malformed"]["agreement"] < MIN_AGREEMENT:
        problems.append(f"/infer after the malformed uploads: {result['after_malformed']}")
    return problems


def run_load(output: Path, num_requests: int = 20, clients: int = 4, per_bundle: int = 2) -> dict[str, Any]:
    """Studies, references, the app with both bundles' shipped weights, a server, the load, the malformed uploads.

    Returns the settings, per-request records, memory figures, malformed-upload results and ``problems``.
    """
    studies_dir, studies = write_studies(output, per_bundle)
    app = prepare_app(output, {bundle: REPO / "bundles" / bundle for bundle in PHANTOMS})
    settings = {"requests": num_requests, "clients": clients, "studies": [s.image_id for s in studies],
                "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0]}  # fmt: skip
    with serve(app, studies_dir, list(PHANTOMS), output / "server.log") as server:
        result: dict[str, Any] = {
            "settings": settings,
            "load": load(server, studies, num_requests, clients, output / "responses"),
        }
        result["malformed_model"] = studies[0].bundle
        result["malformed"] = malformed_uploads(server, studies[0].bundle, output / "malformed")
        response = _infer(server, studies[0].bundle, timeout=900, image=studies[0].image_id)
        after = output / "responses" / "after_malformed_label.nii.gz"
        after.write_bytes(response.content)
        result["after_malformed"] = {
            "status": response.status_code,
            **(_agreement(after, studies[0]) if response.status_code == 200 else {"on_grid": False, "agreement": 0.0}),
        }
        result["rss_end_mb"] = round(server.rss_bytes() / 2**20, 1)
    result["problems"] = checks(result)
    return result


def _cell(text: str) -> str:
    """``text`` as one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _value(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(result: Mapping[str, Any]) -> str:
    """The load figures of :func:`run_load`'s result as Markdown."""
    settings, figures = result["settings"], result["load"]
    rows = [
        [str(r["answered"]), str(r["request"]), r["bundle"], r["image"], str(r["client"]), str(r["status"]),
         f"{r['seconds']:.1f}", _value(r.get("agreement"), 5), _value(r.get("dice_vs_bundle")),
         f"{r['rss_mb']:.0f}", f"{r['peak_rss_mb']:.0f}"]
        for r in figures["records"]
    ]  # fmt: skip
    table = markdown_table(
        ["answered", "request", "bundle", "study", "client", "status", "s", "voxel agreement", "Dice vs bundle",
         "RSS MB", "peak RSS MB"], rows)  # fmt: skip
    uploads = markdown_table(
        ["upload", "bytes", "status", "error (first 200 characters)", "server up after"],
        [[f"`{u['upload']}`", str(u["bytes"]), str(u["status"]), _cell(u["error"][:200]),
          "yes" if u["server_up_after"] else "**no**"] for u in result["malformed"]],
        align=["---", "---:", "---:", "---", "---"],
    )  # fmt: skip
    checks_text = "All checks passed" if not result["problems"] else "**Failed:** " + "; ".join(result["problems"])
    latency = [r["seconds"] for r in figures["records"] if r["status"] == 200]
    median = float(np.median(latency)) if latency else np.nan
    return (
        f"`python -m common.benchmarking.monailabel_load --requests {settings['requests']} --clients "
        f"{settings['clients']}`: one `monailabel start_server` on 127.0.0.1 with both bundles' shipped weights, "
        f"{settings['requests']} `/infer` requests from {settings['clients']} concurrent clients over "
        f"{len(settings['studies'])} unseen phantom studies ({settings['cpu_count']} CPU cores, load average "
        f"{settings['load_average']:.2f} at the start). All answered in {figures['wall_s']:.0f} s, "
        f"{figures['wall_s'] / max(len(latency), 1):.1f} s per request (latency median {median:.1f} s, max "
        f"{max(latency, default=np.nan):.1f} s, queueing included). Server RSS (its process and children): "
        f"{figures['rss_at_start_mb']:.0f} MB before the "
        f"first request, peak {figures['peak_rss_mb']:.0f} MB, {result['rss_end_mb']:.0f} MB at the end.\n\n{table}\n\n"
        f"Malformed uploads (`POST /infer/{result['malformed_model']}` with a file):\n\n{uploads}\n\n"
        f"`/infer` after them: status {result['after_malformed']['status']}, voxel agreement "
        f"{_value(result['after_malformed'].get('agreement'), 5)}. {checks_text}.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20, help="/infer requests in all (default: 20)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default: 4)")
    parser.add_argument("--studies-per-bundle", type=int, default=2, help="phantom studies per bundle (default: 2)")
    parser.add_argument("--output", type=Path, default=REPO / "build" / "monailabel_load", help="a new folder")
    options = parser.parse_args(argv)
    if options.output.exists() and any(options.output.iterdir()):
        parser.error(f"{options.output} is not empty: give a new --output folder")
    result = run_load(options.output, options.requests, options.clients, options.studies_per_bundle)
    text = markdown(result)
    (options.output / "monailabel_load.json").write_text(
        json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8"
    )
    (options.output / "monailabel_load.md").write_text(text, encoding="utf-8")
    echo(text)
    print(
        f"wrote {options.output / 'monailabel_load.json'} and {options.output / 'monailabel_load.md'}", file=sys.stderr
    )
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
