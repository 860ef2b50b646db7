"""Datalists that cannot escape their folder.

A datalist from someone else (a ``dataset.json``, a splits file, a folder of symbolic links) must not make the bundles
read files outside the dataset folder the user named: an entry ``../../../etc/passwd`` would otherwise be followed by
the dataset check, training and inference alike. Every image and label path is resolved (``..`` and symbolic links
included) and must lie inside the dataset folder, itself resolved. A user who keeps images elsewhere on purpose
passes ``--allow_outside_dataset true`` to the bundle (or to ``check-dataset``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["PATH_KEYS", "OutsideDatasetError", "check_contained"]

#: The datalist keys that hold file paths (a string, or a list of strings for several modalities).
PATH_KEYS = ("image", "label")

#: How the message tells the user the way out.
_WAY_OUT = (
    "Entries must lie inside the dataset folder (after resolving '..' and symbolic links). If these files are meant "
    "to be read, pass --allow_outside_dataset true."
)


class OutsideDatasetError(SystemExit):
    """A datalist entry resolves outside its dataset folder.

    A ``SystemExit`` (as the other refusals to start), so that ``monai.bundle run`` and the command-line tools stop
    with this message and exit status 1 instead of a traceback. ``str(error)`` is the message.
    """

    def __str__(self) -> str:
        return str(self.code)


def _paths(value: Any) -> Iterator[str]:
    if isinstance(value, (str, os.PathLike)):
        yield os.fspath(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _paths(item)


def _written(raw: Sequence[Any] | None, index: int, key: str) -> str:
    """The entry as the datalist file writes it, for the message (``raw`` is the section as read from JSON)."""
    if raw is None or index >= len(raw):
        return ""
    entry = raw[index]
    value = entry if isinstance(entry, str) else entry.get(key, "") if isinstance(entry, Mapping) else ""
    return f" {value!r}" if value else ""


def check_contained(
    cases: Sequence[Mapping[str, Any]],
    root: str,
    source: str,
    section: str,
    raw: Sequence[Any] | None = None,
    allow_outside_dataset: bool = False,
) -> None:
    """Refuse ``cases`` if any image or label path resolves outside ``root``.

    Args:
        cases: the datalist with the paths as the pipelines will open them (absolute, or relative to the working
            directory).
        root: the dataset folder.
        source: what the cases were read from (the datalist or splits file, or the folder), named in the message.
        section: the datalist section, named in the message.
        raw: the section as written in ``source``, so that the message quotes the entry as the user sees it.
        allow_outside_dataset: skip the check.

    Raises:
        OutsideDatasetError: one line per offending path: the file, the section and entry number, the entry as
            written and the path it resolves to.
    """
    if allow_outside_dataset:
        return
    real_root = os.path.realpath(root)
    lines = []
    for index, case in enumerate(cases):
        for key in PATH_KEYS:
            for path in _paths(case.get(key)):
                resolved = os.path.realpath(path)
                if os.path.commonpath([real_root, resolved]) != real_root:
                    lines.append(
                        f"  - {source}: '{section}' entry {index} ({key}{_written(raw, index, key)}) resolves to "
                        f"{resolved}, outside the dataset folder {real_root}"
                    )
    if lines:
        raise OutsideDatasetError(
            "\n".join([f"{len(lines)} datalist path(s) outside the dataset folder:", *lines, _WAY_OUT])
        )
