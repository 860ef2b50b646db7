"""Pack a bundle into a self-contained zip for the MONAI model zoo and ``monai.bundle`` (no repository, no network).

``pack-bundle bundles/meningioma_agunet --output dist/`` (or ``python -m common.packaging ...``) writes
``dist/meningioma_agunet_v<version>.zip`` holding one folder ``meningioma_agunet/`` with

- ``configs/``, ``docs/``, ``LICENSE`` and the weights in ``models/``, as in the bundle folder;
- the repository's Python packages the configs import (``common`` and the bundle's own package, plus any package
  they import in turn), next to ``configs/``: ``monai.bundle`` runs from the bundle folder
  (``python -m monai.bundle run --config_file configs/inference.json``) find them on the working directory, from
  elsewhere with ``PYTHONPATH=<bundle folder>``;
- ``large_files.yml`` (model-zoo format) listing every file in ``models/`` with its sha256: the bundle's own entries
  (with their download URLs) are kept, and a weight file whose hash differs from its entry stops the packing;
- ``configs/metadata.json`` without this project's distribution in ``required_packages_version``, since its code is
  inside the zip.

Packing checks that the metadata's ``version`` has a ``changelog`` entry and that the metadata validates against
its schema (``--schema FILE``; by default MONAI downloads the one the metadata names).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import yaml
from monai.bundle import verify_metadata

__all__ = ["main", "pack", "required_packages"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: What a bundle folder contributes to the zip (``data/`` and ``eval/`` hold generated data and run outputs).
BUNDLE_CONTENT = ("configs", "docs", "models", "LICENSE")
LARGE_FILES = "large_files.yml"


def _project_package(name: str) -> str | None:
    """``name``'s top-level package when it is a package of this repository."""
    top = name.split(".")[0]
    return top if (PROJECT_ROOT / top / "__init__.py").is_file() else None


def _config_imports(config: Any) -> Iterator[str]:
    """Dotted names a config imports or instantiates: ``$import x.y``, ``$from x import y``, ``_target_`` paths."""
    if isinstance(config, dict):
        if isinstance(config.get("_target_"), str):
            yield config["_target_"]
        for value in config.values():
            yield from _config_imports(value)
    elif isinstance(config, list):
        for value in config:
            yield from _config_imports(value)
    elif isinstance(config, str) and (config.startswith("$import ") or config.startswith("$from ")):
        statement = ast.parse(config[1:]).body[0]
        yield from [statement.module] if isinstance(statement, ast.ImportFrom) else [a.name for a in statement.names]


def _source_imports(package: str) -> set[str]:
    """Modules imported anywhere in a package of this repository."""
    names = set()
    for path in (PROJECT_ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    return names


def required_packages(bundle_dir: str | Path) -> list[str]:
    """This repository's packages that the bundle's configs need, directly or through imports, sorted."""
    configs = [json.loads(path.read_text(encoding="utf-8")) for path in (Path(bundle_dir) / "configs").glob("*.json")]
    todo = {p for name in _config_imports(configs) if (p := _project_package(name))}
    found: set[str] = set()
    while todo:
        package = todo.pop()
        found.add(package)
        todo |= {p for name in _source_imports(package) if (p := _project_package(name)) and p not in found}
    return sorted(found)


def _file_hash(path: Path, hash_type: str) -> str:
    digest = hashlib.new(hash_type)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _large_files(bundle: Path) -> dict:
    """The zip's ``large_files.yml`` content: every file in ``models/`` with its sha256.

    A file listed in the bundle's own ``large_files.yml`` keeps its entry (URL) and must match its hash, of the
    entry's ``hash_type`` (MONAI's default: md5).
    """
    listed = bundle / LARGE_FILES
    entries = (
        ((yaml.safe_load(listed.read_text(encoding="utf-8")) or {}).get("large_files") or [])
        if listed.is_file()
        else []
    )
    by_path = {Path(e["path"]).as_posix(): e for e in entries}
    result = []
    for weights in sorted(p for p in (bundle / "models").glob("*") if p.is_file() and p.name != ".gitkeep"):
        path = weights.relative_to(bundle).as_posix()
        entry = by_path.get(path, {"path": path, "url": ""})
        if entry.get("hash_val"):
            hash_type = entry.get("hash_type", "md5")
            if _file_hash(weights, hash_type) != entry["hash_val"]:
                raise ValueError(f"{weights}: {hash_type} differs from its {listed} entry; update one of them.")
        result.append({**entry, "hash_val": _file_hash(weights, "sha256"), "hash_type": "sha256"})
    return {"large_files": result}


def pack(bundle_dir: str | Path, output_dir: str | Path, schema: str | None = None) -> Path:
    """Write ``<output_dir>/<bundle name>_v<version>.zip`` (see the module docstring) and return its path.

    Raises:
        ValueError: the version has no changelog entry, the metadata does not validate, or weights do not match
            their ``large_files.yml`` entry.
    """
    bundle = Path(bundle_dir).resolve()
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
    if metadata["version"] not in metadata.get("changelog", {}):
        raise ValueError(f"{bundle}: version {metadata['version']} has no entry in the metadata's changelog.")
    packages = required_packages(bundle)
    ours = {dist for package in packages for dist in packages_distributions().get(package, [])}
    metadata["required_packages_version"] = {
        name: version for name, version in metadata.get("required_packages_version", {}).items() if name not in ours
    }
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / bundle.name
        for name in BUNDLE_CONTENT:
            source = bundle / name
            if source.is_dir():
                shutil.copytree(source, staging / name, ignore=shutil.ignore_patterns(".gitkeep"))
            elif source.is_file():
                staging.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, staging / name)
        for package in packages:
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(PROJECT_ROOT / package, staging / package, ignore=ignore)
        meta_file = staging / "configs" / "metadata.json"
        meta_file.write_text(json.dumps(metadata, indent=4) + "\n", encoding="utf-8")
        (staging / LARGE_FILES).write_text(yaml.safe_dump(_large_files(bundle), sort_keys=False), encoding="utf-8")
        verify_metadata(meta_file=str(meta_file), filepath=schema or str(Path(tmp) / "schema.json"))
        output = Path(output_dir)
        output.mkdir(parents=True, exist_ok=True)
        archive = shutil.make_archive(
            str(output / f"{bundle.name}_v{metadata['version']}"), "zip", root_dir=tmp, base_dir=bundle.name
        )
    return Path(archive)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point (``pack-bundle``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle_dir", help="bundle folder, e.g. bundles/meningioma_agunet")
    parser.add_argument("--output", default="dist", help="folder for the zip (default: dist)")
    parser.add_argument("--schema", help="metadata JSON schema file (default: download the one the metadata names)")
    args = parser.parse_args(argv)
    print(pack(args.bundle_dir, args.output, args.schema))


if __name__ == "__main__":
    main()
