"""Config switches as the command line passes them.

``python -m monai.bundle run`` parses its arguments with Python Fire, which turns ``False`` and ``True`` into booleans
but leaves ``false`` and ``true`` as text, and any non-empty text is true in Python: ``--resume false`` would resume.
The configs pass every on/off key through :func:`as_flag`, so both spellings mean what they say.
"""

from __future__ import annotations

__all__ = ["as_flag"]

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def as_flag(value: bool | int | str, name: str = "flag") -> bool:
    """``value`` as a bool: a bool, 0 or 1, or their text in any case (``true``, ``yes``, ``on``, ``false``, ...).

    Args:
        value: the config value.
        name: the config key, named in the error.

    Raises:
        ValueError: anything else (``--resume maybe``), naming the key.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"--{name} must be true or false, got {value!r}.")
