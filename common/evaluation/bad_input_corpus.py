"""The bad-input corpus with a bundle's shipped weights: one batch over good phantoms mixed with every bad input.

``python -m common.evaluation.bad_input_corpus meningioma_agunet`` (or ``vestibular_spvpa``) writes a dataset folder
of unseen phantoms (with their reference labels) and the images of :mod:`common.phantoms.bad_inputs`, runs the
bundle's default inference config over all of it in one ``python -m monai.bundle run``, runs every good case again on
its own, and checks that:

- every good case is segmented, with the same mask (so the same Dice) as when it runs alone;
- every bad input fails, and the batch's summary names it with its problem;
- no file of the input folder changed (sha256 before and after).

It prints a Markdown table (case, outcome in the batch, Dice in the batch and alone, the error) and writes it with the
figures to ``<output>/bad_input_corpus.{json,md}`` (``--update-model-card``: also into the bundle's model card); the
exit status is 1 when a check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from common.benchmarking.report import markdown_table, replace_marked_section
from common.console import echo
from common.phantoms import write_meningioma_dataset, write_vestibular_dataset
from common.phantoms.bad_inputs import write_bad_inputs
from common.training.bundle_runner import run_bundle_process

__all__ = ["CORPORA", "CorpusSpec", "checksums", "main", "run_corpus", "write_corpus"]

REPO = Path(__file__).resolve().parents[2]
#: Folder of the bad inputs inside the corpus dataset.
BAD_FOLDER = "imagesBad"
#: The model card's section (``--update-model-card``): its heading, the heading it goes before, its markers.
HEADING, BEFORE = "## Bad inputs", "## Data checks, resuming and determinism"
MARKERS = ("<!-- bad-input-corpus:start -->", "<!-- bad-input-corpus:end -->")


@dataclass(frozen=True)
class CorpusSpec:
    """How a bundle's corpus is made.

    Attributes:
        write_phantoms: the bundle's phantom writer (``write_meningioma_dataset`` ...).
        seed: phantom seed; its ``test`` section is never trained on.
        voxel_mm: voxel size of the bad images, so that their 20 voxels cover the bundle's ``min_extent_mm``.
    """

    write_phantoms: Callable[..., Path]
    seed: int
    voxel_mm: float


#: The corpus of each bundle: the README samples' seeds (2021, 2019); 6 mm voxels give the 100 mm the vestibular
#: bundle's boxes need.
CORPORA = {
    "meningioma_agunet": CorpusSpec(write_meningioma_dataset, seed=2021, voxel_mm=4.0),
    "vestibular_spvpa": CorpusSpec(write_vestibular_dataset, seed=2019, voxel_mm=6.0),
}


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def write_corpus(spec: CorpusSpec, folder: Path, num_good: int) -> tuple[list[dict[str, str]], dict[str, str], int]:
    """A dataset folder: ``num_good`` phantoms (``imagesTs`` / ``labelsTs``) and the bad inputs (``imagesBad``).

    Its ``dataset.json`` lists the phantoms with their labels and the bad inputs without, in one ``test`` section.

    Returns:
        The good entries, each bad input's name with the phrase its error must contain, and the ``max_voxels`` that
        the run needs (the largest phantom's voxels: ``too_large.nii.gz`` is one slice larger).
    """
    spec.write_phantoms(folder, num_training=0, num_test=num_good, seed=spec.seed)
    good = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))["test"]
    shapes = [nib.load(str(folder / case["image"])).shape for case in good]
    largest = max(shapes, key=np.prod)
    bad = write_bad_inputs(folder / BAD_FOLDER, spec.voxel_mm, too_large_shape=(largest[0] + 1, *largest[1:]))
    names = sorted(path.name for path in (folder / BAD_FOLDER).iterdir())
    entries = good + [{"image": f"./{BAD_FOLDER}/{name}"} for name in names]
    (folder / "dataset.json").write_text(json.dumps({"training": [], "test": entries}, indent=1), encoding="utf-8")
    return good, bad, int(np.prod(largest))


def _infer(bundle_root: Path, dataset: Path, output: Path, overrides: Mapping[str, Any]) -> tuple[int, str, str]:
    """One real ``python -m monai.bundle run`` of the bundle's inference config; returns status, output, command."""
    arguments = {"bundle_root": str(bundle_root), "dataset_dir": str(dataset), "output_dir": str(output)}
    proc = run_bundle_process(bundle_root / "configs" / "inference.json", {**arguments, **overrides})
    shown = shlex.join(["python", *proc.args[1:]]).replace(f"{REPO}{os.sep}", "")  # paths in the repository: relative
    return proc.returncode, proc.stdout + proc.stderr, shown


def _result(output: Path, image: str) -> tuple[float | None, np.ndarray | None]:
    """The Dice that the report of ``image`` gives against its reference, and its mask (None when not written)."""
    stem = Path(image).name.removesuffix(".gz").removesuffix(".nii")
    report, mask = output / f"{stem}_report.json", output / f"{stem}_seg.nii.gz"
    if not report.is_file() or not mask.is_file():
        return None, None
    dice = json.loads(report.read_text(encoding="utf-8")).get("dice_vs_reference")
    return dice, np.asarray(nib.load(str(mask)).dataobj)


def _alone(bundle_root: Path, dataset: Path, case: Mapping[str, str], folder: Path, overrides: Mapping[str, Any]):
    """``case`` copied into a dataset of its own and segmented there; returns its Dice and mask."""
    inputs = folder / "input"
    for key in ("image", "label"):
        target = inputs / case[key]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dataset / case[key], target)
    (inputs / "dataset.json").write_text(json.dumps({"test": [dict(case)]}), encoding="utf-8")
    status, log, command = _infer(bundle_root, inputs, folder / "output", overrides)
    if status != 0:
        raise RuntimeError(f"{command} failed ({status}) on {case['image']} alone:\n{log[-3000:]}")
    return _result(folder / "output", case["image"])


def _dice(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def run_corpus(bundle: str, output: Path, num_good: int = 2, overrides: Mapping[str, Any] | None = None) -> dict:
    """Write the corpus of ``bundle`` under ``output``, segment it in one batch and each good case alone, check.

    Args:
        bundle: ``meningioma_agunet`` or ``vestibular_spvpa`` (the shipped weights of ``bundles/<bundle>``).
        output: a new folder (``input/``, ``batch/``, ``alone/<case>/``).
        num_good: phantoms among the bad inputs.
        overrides: more config overrides for every run (``ckpt_path`` for other weights, say).

    Returns:
        ``{"bundle", "command", "cases": [...], "problems": [...], "inputs_unchanged": bool}``; ``problems`` lists
        every check that failed (empty when all passed).
    """
    bundle_root = REPO / "bundles" / bundle
    dataset = output / "input"
    good, bad, max_voxels = write_corpus(CORPORA[bundle], dataset, num_good)
    before = checksums(dataset)
    run_overrides = {"max_voxels": max_voxels, **dict(overrides or {})}
    status, log, command = _infer(bundle_root, dataset, output / "batch", run_overrides)
    after = checksums(dataset)
    summary_file = output / "batch" / "inference_summary.json"
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else {}
    failed = {Path(f["case"]).name: f["error"] for f in summary.get("failed", [])}
    succeeded = {Path(c).name for c in summary.get("succeeded", [])}
    problems = [] if status == 1 else [f"the batch exited with {status}, not 1 (cases failed):\n{log[-3000:]}"]
    if after != before:
        problems.append(
            f"input files changed: {sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))}"
        )
    cases = []
    for case in good:
        name = Path(case["image"]).name
        dice, mask = _result(output / "batch", case["image"])
        dice_alone, mask_alone = _alone(
            bundle_root, dataset, case, output / "alone" / name.split(".")[0], run_overrides
        )
        same = mask is not None and mask_alone is not None and np.array_equal(mask, mask_alone)
        cases.append(
            {
                "case": name,
                "kind": "phantom",
                "batch": "segmented" if name in succeeded else "failed",
                "dice_batch": dice,
                "dice_alone": dice_alone,
                "same_mask": same,
                "error": failed.get(name, ""),
            }
        )
        if name not in succeeded or not same or dice is None or dice != dice_alone:
            problems.append(f"{name}: batch Dice {_dice(dice)} / alone {_dice(dice_alone)}, same mask {same}")
    for name in sorted(path.name for path in (dataset / BAD_FOLDER).iterdir()):
        expected = bad.get(name)
        error = failed.get(name, "")
        outcome = "failed" if name in failed else "segmented" if name in succeeded else "missing"
        cases.append(
            {
                "case": name,
                "kind": "bad input" if expected else "valid",
                "batch": outcome,
                "dice_batch": None,
                "dice_alone": None,
                "same_mask": None,
                "error": error,
            }
        )
        if expected and (name not in failed or expected not in error or name not in error or name not in log):
            problems.append(f"{name}: expected a failure naming it and {expected!r}; got {outcome}: {error!r}")
        if not expected and name not in succeeded:
            problems.append(f"{name} is a valid image and was not segmented: {error!r}")
    if bad and f"{len(bad)} case(s) failed" not in log:
        problems.append(f"the batch's log does not end with '{len(bad)} case(s) failed'")
    return {
        "bundle": bundle,
        "dataset": str(dataset),
        "command": command,
        "cases": cases,
        "problems": problems,
        "inputs_unchanged": after == before,
        "num_input_files": len(before),
    }


def markdown(result: Mapping[str, Any]) -> str:
    """The corpus table of :func:`run_corpus`'s result, with the command and the checks; errors name the files
    relative to the corpus folder."""
    folder = f"{result['dataset']}{os.sep}"
    rows = [
        [f"`{c['case']}`", c["kind"], c["batch"], _dice(c["dice_batch"]), _dice(c["dice_alone"]),
         "-" if c["same_mask"] is None else ("yes" if c["same_mask"] else "**no**"),
         c["error"].replace(folder, "").replace("|", "\\|").replace("\n", " ")[:200]]
        for c in result["cases"]
    ]  # fmt: skip
    table = markdown_table(
        ["case", "kind", "in the batch", "Dice (batch)", "Dice (alone)", "same mask", "error (first 200 characters)"],
        rows,
        align=["---", "---", "---", "---:", "---:", "---", "---"],
    )
    checks = "All checks passed" if not result["problems"] else "**Failed:** " + "; ".join(result["problems"])
    unchanged = "unchanged" if result["inputs_unchanged"] else "**changed**"
    return (
        f"`python -m common.evaluation.bad_input_corpus {result['bundle']}`: one batch over the corpus, each phantom "
        f"again on its own, with the shipped weights. The batch:\n\n`{result['command']}`\n\n{table}\n\n"
        f"Input folder: {result['num_input_files']} files, sha256 {unchanged} after the batch. {checks}.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", choices=sorted(CORPORA))
    parser.add_argument("--output", type=Path, help="a new folder (default: bundles/<bundle>/eval/bad_input_corpus)")
    parser.add_argument("--num-good", type=int, default=2, help="phantoms among the bad inputs (default: 2)")
    parser.add_argument("--update-model-card", action="store_true", help="write the table into docs/README.md")
    options = parser.parse_args(argv)
    output = options.output or REPO / "bundles" / options.bundle / "eval" / "bad_input_corpus"
    if output.exists() and any(output.iterdir()):
        parser.error(f"{output} is not empty: give a new --output folder")
    result = run_corpus(options.bundle, output, options.num_good)
    text = markdown(result)
    (output / "bad_input_corpus.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (output / "bad_input_corpus.md").write_text(text, encoding="utf-8")
    echo(text)
    print(f"wrote {output / 'bad_input_corpus.json'} and {output / 'bad_input_corpus.md'}", file=sys.stderr)
    if options.update_model_card:
        card = REPO / "bundles" / options.bundle / "docs" / "README.md"
        card.write_text(
            replace_marked_section(card.read_text(encoding="utf-8"), text, HEADING, BEFORE, MARKERS), encoding="utf-8"
        )
        print(f"updated {card}", file=sys.stderr)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
