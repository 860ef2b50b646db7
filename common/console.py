"""Console output that works whatever the terminal's encoding."""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["echo"]


def echo(text: str, file: TextIO | None = None) -> None:
    """Print ``text``, replacing characters the stream cannot encode (``→``, ``±`` on an ASCII console) with ``?``.

    Reports and tables use such characters; on a terminal with an ASCII locale a plain ``print`` would raise
    ``UnicodeEncodeError`` after the work is done. The files written keep them (they are UTF-8).
    """
    stream = file or sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    print(text.encode(encoding, errors="replace").decode(encoding), file=stream)
