"""One command for k-fold cross-validation of a bundle, its ablations, test-time options and result tables.

``crossval --bundle bundles/meningioma_agunet --output runs/cv`` runs, for every fold ``f`` of the volume-stratified
splits that the bundle's train config makes (:mod:`common.data.folds`: train on k-2 folds, validate on fold f+1, test
on fold f):

1. **train**: the bundle's ``train.json`` with ``--fold f``; the checkpoint is picked on the validation fold by the
   config's own rule (validation loss or Dice);
2. **validate**: ``train.json`` + ``evaluate.json`` on the validation fold (``eval_section: validation``); its
   ``metrics_summary.json`` gives the probability threshold (PT) with the best mean Dice;
3. **test**: the same on the test fold at that threshold, predictions and per-case metrics on the original grids.

With ``--flip-tta`` steps 2-3 are repeated with flip test-time augmentation (the threshold picked again). With
``--ensemble`` and a dataset whose ``dataset.json`` has a labelled ``test`` section (cases no fold model trained on),
each fold model and the ensemble of all fold models (mean of probabilities, at the median of the fold thresholds) are
evaluated on those cases, so the tables show what each option buys.

Steps run in this process through ``monai.bundle.ConfigWorkflow``, the engine behind ``python -m monai.bundle run``,
each logging to ``step.log`` in its folder and, once its outputs exist, recording its time (and threshold) in
``step.json``. A step with a ``step.json`` is not run again (a finished fold is skipped), so an interrupted run
resumes where it stopped.

Ablations are named lists of config overrides (``--ablation unet attention=none multi_scale=false`` or a JSON/YAML
file of ``{name: {key: value}}``), each cross-validated in turn and tabulated side by side. Outputs under
``--output``:

- ``<experiment>/fold_<f>/``: ``models/model.pt``, ``train/``, ``validation[_tta]/``, ``test[_tta]/`` (case metrics,
  predictions, ``step.log``, ``step.json``), and ``<experiment>/heldout/`` with ``--ensemble``;
- ``<experiment>/folds[_tta].{csv,json,md}``: one row per fold and the pooled row;
- ``cross_validation.{csv,json,md}``: the pooled rows of every experiment (and flip TTA variant) side by side;
- ``heldout.{csv,json,md}``: fold models against their ensemble on the held-out cases (``--ensemble``);
- ``figures/dice_by_volume.png`` and ``figures/<experiment>[_tta]_cases.png`` (best, median and worst test case);
- ``results.md``: all of it on one page, with the settings and the time spent.

The columns come from the evaluate config's ``table_columns`` (see :data:`common.evaluation.metrics.tables.COLUMNS`).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common.console import echo
from common.data import find_cases, load_split
from common.evaluation.figures import CaseView, case_slices_figure, dice_by_volume_boxplot
from common.evaluation.metrics.tables import (
    FoldResult,
    Table,
    fold_row,
    pooled_row,
    read_case_metrics,
    resolve_columns,
    write_table,
)
from common.training.bundle_runner import BundleRunner, StepFailed, parse_overrides

__all__ = [
    "CrossValidation",
    "Experiment",
    "Variant",
    "load_ablations",
    "main",
]

#: Written by ``CaseMetricsSaver``.
SUMMARY = "metrics_summary.json"
CASE_METRICS = "case_metrics.csv"
#: Written by :class:`CrossValidation` when a step has succeeded; its presence marks the step finished.
STEP = "step.json"
HELDOUT_DATA = "$common.data.find_cases(@dataset_dir, section='test')"


@dataclass(frozen=True)
class Experiment:
    """A named set of config overrides cross-validated as one row of the tables."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", self.name):
            raise ValueError(f"experiment name {self.name!r}: use letters, digits and _ . + - (it names a folder).")


def load_ablations(path: str | Path) -> list[Experiment]:
    """Experiments from a JSON or YAML mapping ``{name: {key: value, ...}}``, in file order."""
    content = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(content, dict) or not all(isinstance(v, dict | None) for v in content.values()):
        raise ValueError(f"{path}: expected a mapping of experiment names to override mappings.")
    return [Experiment(str(name), dict(overrides or {})) for name, overrides in content.items()]


@dataclass(frozen=True)
class Variant:
    """An inference setting evaluated for every fold: a table label, a folder suffix and config overrides."""

    label: str
    suffix: str
    overrides: dict[str, Any]


PLAIN = Variant("", "", {"flip_tta": False})
FLIP_TTA = Variant("flip TTA", "_tta", {"flip_tta": True})


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


class CrossValidation:
    """Cross-validation of a bundle's experiments; :meth:`run` does everything, resuming finished steps.

    Args:
        runner: runs the bundle's configs (its overrides apply to every experiment).
        output: the run folder.
        experiments: the rows to compare; one unnamed baseline (``default``) when empty.
        folds: the folds to run (default all of the config's ``num_folds``).
        flip_tta: also evaluate every fold with flip test-time augmentation.
        ensemble: also evaluate fold models and their ensemble on the dataset's labelled ``test`` section.
        columns: table column keys (default the evaluate config's ``table_columns``).
        log: progress messages.
    """

    def __init__(
        self,
        runner: BundleRunner,
        output: str | Path,
        experiments: Sequence[Experiment] = (),
        folds: Sequence[int] | None = None,
        flip_tta: bool = False,
        ensemble: bool = False,
        columns: Sequence[str] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.runner = runner
        self.output = Path(output).resolve()
        self.experiments = list(experiments) or [Experiment("default")]
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment names must be unique, got {names}.")
        self.variants = [PLAIN, FLIP_TTA] if flip_tta else [PLAIN]
        self.ensemble = ensemble
        self.log = log
        flow = runner.workflow(["train", "evaluate"])
        get = flow.parser.get_parsed_content
        self.splits_file = str(get("splits_file"))
        self.dataset_dir = str(get("dataset_dir"))
        self.num_folds = int(get("num_folds"))
        self.columns = resolve_columns(list(columns) if columns else list(get("table_columns")))
        self.bundle_name = str(flow.parser.get("_meta_#name", runner.bundle.name))
        self.folds = sorted(set(folds)) if folds is not None else list(range(self.num_folds))
        if not self.folds or any(not 0 <= f < self.num_folds for f in self.folds):
            raise ValueError(f"folds must be in [0, {self.num_folds - 1}], got {folds}.")
        self.heldout = self._heldout_cases() if ensemble else []

    # ---------------------------------------------------------------------------------------------------------------
    # Steps
    # ---------------------------------------------------------------------------------------------------------------
    def _heldout_cases(self) -> list[dict]:
        try:
            cases = find_cases(self.dataset_dir, section="test")
        except (KeyError, FileNotFoundError):
            cases = []
        if not cases or any("label" not in case for case in cases):
            raise ValueError(
                f"--ensemble needs cases that no fold model trained on: a 'test' section with labels in "
                f"{self.dataset_dir}/dataset.json (e.g. phantoms --num-test N)."
            )
        return cases

    def _step(
        self, name: str, configs: Sequence[str], folder: Path, expect: Path, overrides: dict[str, Any], **record: Any
    ) -> dict[str, Any]:
        """Run ``configs`` into ``folder`` unless its ``step.json`` exists; returns that record.

        The record (the step's name, seconds and ``record``) is written only once ``expect`` exists.
        """
        marker = folder / STEP
        if marker.is_file():
            return _read_json(marker)
        self.log(f"  {name} ...")
        try:
            seconds = self.runner.run(configs, folder / "step.log", **overrides)
        except StepFailed as error:
            raise StepFailed(f"{name}: {error}") from error
        if not expect.exists():
            raise StepFailed(f"{name}: finished without writing {expect} (log: {folder / 'step.log'}).")
        content = {"step": name, "seconds": seconds, **record}
        _write_json(marker, content)
        self.log(f"  {name} done in {seconds / 60:.1f} min")
        return content

    def _experiment_dir(self, experiment: Experiment) -> Path:
        folder = self.output / experiment.name
        settings = {"bundle": str(self.runner.bundle), "overrides": {**self.runner.overrides, **experiment.overrides}}
        marker = folder / "experiment.json"
        if marker.is_file() and _read_json(marker) != json.loads(json.dumps(settings)):
            raise ValueError(
                f"{folder} holds a run with other settings ({marker}); use another --output or experiment name."
            )
        _write_json(marker, settings)
        return folder

    @staticmethod
    def _tag(experiment: Experiment, what: str, variant: Variant) -> str:
        return " ".join(part for part in (experiment.name, what, variant.label) if part)

    def _train(self, experiment: Experiment, fold: int, folder: Path) -> Path:
        models = folder / "models"
        if not (folder / "train" / STEP).is_file():
            for stale in models.glob("*.pt"):
                stale.unlink()
        self._step(
            f"{experiment.name} fold {fold}: train",
            ["train"],
            folder / "train",
            models / "model.pt",
            {**experiment.overrides, "fold": fold, "ckpt_dir": str(models), "output_dir": str(folder / "train")},
        )
        return models / "model.pt"

    def _evaluate(
        self, name: str, folder: Path, experiment: Experiment, variant: Variant, threshold: float, **overrides: Any
    ) -> dict[str, Any]:
        """The evaluate config (train + evaluate) into ``folder`` at ``threshold``; returns the step record."""
        return self._step(
            name,
            ["train", "evaluate"],
            folder,
            folder / SUMMARY,
            {
                **experiment.overrides,
                **variant.overrides,
                "threshold": threshold,
                "output_dir": str(folder),
                **overrides,
            },
            threshold=threshold,
        )

    def _threshold(self, summary: Path) -> float:
        best = _read_json(summary).get("best_threshold")
        if not best:
            self.log(f"  no threshold could be picked from {summary} (no Dice per threshold); using 0.5")
            return 0.5
        return float(best["threshold"])

    def run_fold(self, experiment: Experiment, fold: int) -> None:
        """Train, pick the threshold on the validation fold and test, for every variant; skips finished steps."""
        folder = self._experiment_dir(experiment) / f"fold_{fold}"
        if all((folder / f"test{v.suffix}" / STEP).is_file() for v in self.variants):
            self.log(f"{experiment.name} fold {fold}: finished earlier, skipped")
            return
        self.log(f"{experiment.name} fold {fold}")
        model = self._train(experiment, fold, folder)
        for variant in self.variants:
            tag = self._tag(experiment, f"fold {fold}", variant)
            validation = folder / f"validation{variant.suffix}"
            self._evaluate(
                f"{tag}: validation",
                validation,
                experiment,
                variant,
                0.5,
                fold=fold,
                eval_section="validation",
                ckpt_path=str(model),
            )
            self._evaluate(
                f"{tag}: test",
                folder / f"test{variant.suffix}",
                experiment,
                variant,
                self._threshold(validation / SUMMARY),
                fold=fold,
                eval_section="test",
                ckpt_path=str(model),
            )

    def run_heldout(self, experiment: Experiment) -> None:
        """Each fold model and the ensemble of all fold models on the dataset's held-out ``test`` cases."""
        folder = self._experiment_dir(experiment)
        models = {f: str(folder / f"fold_{f}" / "models" / "model.pt") for f in self.folds}
        heldout = {"validate#dataset#data": HELDOUT_DATA}
        for variant in self.variants:
            thresholds = []
            for fold, model in models.items():
                threshold = self._threshold(folder / f"fold_{fold}" / f"validation{variant.suffix}" / SUMMARY)
                thresholds.append(threshold)
                self._evaluate(
                    f"{self._tag(experiment, f'fold {fold}', variant)}: held-out",
                    folder / "heldout" / f"fold_{fold}{variant.suffix}",
                    experiment,
                    variant,
                    threshold,
                    fold=fold,
                    ckpt_path=model,
                    **heldout,
                )
            self._evaluate(
                f"{self._tag(experiment, 'ensemble', variant)}: held-out",
                folder / "heldout" / f"ensemble{variant.suffix}",
                experiment,
                variant,
                statistics.median(thresholds),
                fold=self.folds[0],
                ensemble_checkpoints=list(models.values()),
                **heldout,
            )

    # ---------------------------------------------------------------------------------------------------------------
    # Tables and figures
    # ---------------------------------------------------------------------------------------------------------------
    @staticmethod
    def _result(folder: Path) -> FoldResult:
        """The per-case rows and the threshold of a finished evaluation step."""
        return FoldResult(
            rows=read_case_metrics(folder / CASE_METRICS), threshold=float(_read_json(folder / STEP)["threshold"])
        )

    @staticmethod
    def _row_label(experiment: Experiment, variant: Variant, what: str = "") -> str:
        return " + ".join(part for part in (experiment.name, what, variant.label) if part)

    def tables(self) -> dict[str, Table]:
        """The per-fold tables, the side-by-side cross-validation table and (with ``--ensemble``) the held-out one."""
        tables: dict[str, Table] = {}
        summary = Table(f"{self.bundle_name}: pooled test folds ({len(self.folds)} folds)", self.columns)
        heldout = Table(f"{self.bundle_name}: held-out test set ({len(self.heldout)} cases)", self.columns)
        for experiment in self.experiments:
            folder = self.output / experiment.name
            for variant in self.variants:
                results = [self._result(folder / f"fold_{f}" / f"test{variant.suffix}") for f in self.folds]
                per_fold = Table(
                    f"{self.bundle_name}, {self._row_label(experiment, variant)}: test folds", self.columns
                )
                per_fold.label_header = "Fold"
                for fold, result in zip(self.folds, results):
                    per_fold.add(str(fold), fold_row(result, self.columns))
                per_fold.add("pooled", pooled_row(results, self.columns))
                tables[f"{experiment.name}/folds{variant.suffix}"] = per_fold
                summary.add(self._row_label(experiment, variant), pooled_row(results, self.columns))
                if self.ensemble:
                    models = [self._result(folder / "heldout" / f"fold_{f}{variant.suffix}") for f in self.folds]
                    ensemble = self._result(folder / "heldout" / f"ensemble{variant.suffix}")
                    heldout.add(self._row_label(experiment, variant, "fold models"), pooled_row(models, self.columns))
                    heldout.add(self._row_label(experiment, variant, "ensemble"), fold_row(ensemble, self.columns))
        tables["cross_validation"] = summary
        if self.ensemble:
            tables["heldout"] = heldout
        return tables

    def _label_of(self) -> dict[str, str]:
        """Image path -> label path over the tested folds (the test cases are in the splits file)."""
        return {case["image"]: case["label"] for f in self.folds for case in load_split(self.splits_file, f, "test")}

    def figures(self) -> list[Path]:
        """Dice per volume bin for every experiment and variant, and their best, median and worst test cases."""
        panels = {}
        paths = []
        labels = self._label_of()
        for experiment in self.experiments:
            for variant in self.variants:
                folds = [self.output / experiment.name / f"fold_{f}" / f"test{variant.suffix}" for f in self.folds]
                cases = [(folder, row) for folder in folds for row in read_case_metrics(folder / CASE_METRICS)]
                name = self._row_label(experiment, variant)
                panels[name] = (
                    [float(row["ref_volume_ml"]) for _, row in cases],
                    [float(row["dice"]) for _, row in cases],
                )
                views = self._extreme_cases(cases, labels)
                stem = f"{experiment.name}{variant.suffix}_cases.png"
                paths.append(case_slices_figure(views, self.output / "figures" / stem))
        paths.insert(0, dice_by_volume_boxplot(panels, self.output / "figures" / "dice_by_volume.png"))
        return paths

    @staticmethod
    def _extreme_cases(cases: list[tuple[Path, dict]], labels: dict[str, str]) -> list[CaseView]:
        """The best, median and worst test case by Dice (among cases with a reference tumour when there are any); a
        case that is several of them (fewer than three cases) is drawn once."""
        with_tumour = [c for c in cases if float(c[1]["ref_volume_ml"]) > 0] or cases
        ranked = sorted(with_tumour, key=lambda c: -float(c[1]["dice"]))
        titles: dict[int, list[str]] = {}
        for title, rank in (("best", 0), ("median", len(ranked) // 2), ("worst", len(ranked) - 1)):
            titles.setdefault(rank, []).append(title)
        views = []
        for rank, names in titles.items():
            folder, row = ranked[rank]
            views.append(
                CaseView(
                    title=f"{', '.join(names)}: {row['case']}\nDice {100 * float(row['dice']):.1f} %, "
                    f"{float(row['ref_volume_ml']):.2f} ml",
                    image=row["filename"],
                    reference=labels.get(row["filename"]),
                    prediction=folder / "predictions" / f"{row['case']}_seg.nii.gz",
                )
            )
        return views

    def write_results(self, wall_seconds: float) -> Path:
        """Write every table (CSV, JSON, Markdown), the figures and ``results.md``; returns its path."""
        tables = self.tables()
        for key, table in tables.items():
            write_table(table, self.output / key)
        figures = self.figures()
        steps = [_read_json(path) for e in self.experiments for path in (self.output / e.name).rglob(STEP)]
        train = sum(step["seconds"] for step in steps if step["step"].endswith(": train"))
        total = sum(step["seconds"] for step in steps)
        overrides = {k: v for k, v in self.runner.overrides.items() if k != "bundle_root"}
        lines = [
            f"# Cross-validation of {self.bundle_name}",
            "",
            f"- Bundle: `{self.runner.bundle}`; dataset: `{self.dataset_dir}`; splits: `{self.splits_file}`",
            f"- Folds: {self.folds} of {self.num_folds} (volume-stratified; train on {self.num_folds - 2}, pick the "
            "checkpoint and the probability threshold PT on the next fold, test on the fold)",
            f"- Overrides for every experiment: `{json.dumps(overrides)}`",
            *(f"- Experiment `{e.name}`: `{json.dumps(e.overrides)}`" for e in self.experiments),
            f"- Time: {total / 60:.1f} min over all steps ({train / 60:.1f} min training, {len(steps)} steps, "
            f"earlier invocations included); this invocation {wall_seconds / 60:.1f} min wall time",
            "",
            "Per-case columns are mean ± std over all test cases of the folds; F1, recall, precision and PT are "
            "mean ± std over folds (pooled estimates).",
            "",
            tables["cross_validation"].markdown(),
        ]
        if "heldout" in tables:
            lines += [
                "Held-out cases no fold model trained on: fold models (pooled over models) against the ensemble of "
                "all fold models (mean probability, at the median of the fold thresholds).",
                "",
                tables["heldout"].markdown(),
            ]
        lines += [table.markdown() for key, table in tables.items() if "/folds" in key]
        lines += [f"![{path.stem}](figures/{path.name})\n" for path in figures]
        results = self.output / "results.md"
        results.write_text("\n".join(lines), encoding="utf-8")
        return results

    def run(self) -> Path:
        """Run every experiment's folds (and the held-out evaluations), then write the results; returns results.md."""
        start = time.perf_counter()
        for experiment in self.experiments:
            for fold in self.folds:
                self.run_fold(experiment, fold)
            if self.ensemble:
                self.run_heldout(experiment)
        return self.write_results(time.perf_counter() - start)


def build_parser() -> argparse.ArgumentParser:
    """The ``crossval`` command line."""
    parser = argparse.ArgumentParser(
        prog="crossval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", required=True, help="bundle folder, e.g. bundles/meningioma_agunet")
    parser.add_argument("--output", required=True, help="run folder (created; an earlier run there is resumed)")
    parser.add_argument("--dataset-dir", help="dataset folder with dataset.json (default: the bundle's phantoms)")
    parser.add_argument("--folds", type=int, nargs="+", help="folds to run (default: all)")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every experiment; VALUE is JSON (5, true, [16, 32], null) or plain text",
    )
    parser.add_argument(
        "--ablation",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME", "KEY=VALUE"),
        help="an experiment: a name and its overrides (repeat for several; a name alone is the baseline)",
    )
    parser.add_argument("--ablations", help="JSON or YAML file {name: {key: value}} of experiments")
    parser.add_argument("--flip-tta", action="store_true", help="also evaluate with flip test-time augmentation")
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="also evaluate fold models and their ensemble on the dataset's labelled 'test' section",
    )
    parser.add_argument("--columns", nargs="+", help="table columns (default: the evaluate config's table_columns)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crossval`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    try:
        overrides = parse_overrides(args.overrides)
        if args.dataset_dir:
            overrides["dataset_dir"] = str(Path(args.dataset_dir).resolve())
        experiments = [Experiment(name, parse_overrides(items)) for name, *items in args.ablation]
        if args.ablations:
            experiments += load_ablations(args.ablations)
        cv = CrossValidation(
            BundleRunner(args.bundle, overrides),
            args.output,
            experiments,
            folds=args.folds,
            flip_tta=args.flip_tta,
            ensemble=args.ensemble,
            columns=args.columns,
        )
        results = cv.run()
    except (StepFailed, ValueError, FileNotFoundError) as error:
        echo(f"crossval: error: {error}", file=sys.stderr)
        return 1
    echo(results.read_text(encoding="utf-8"))
    echo(f"results: {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
