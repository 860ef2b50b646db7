"""Finding trained weights before inference, with a message that says what to do when they are missing."""

from __future__ import annotations

import os

__all__ = ["require_weights"]


def require_weights(path: str, train_command: str) -> str:
    """Return ``path`` if it is a file; otherwise stop with a message that says how to get weights.

    Args:
        path: expected checkpoint (a state dict saved by the bundle's train config).
        train_command: the command that trains this bundle, quoted in the message.

    Raises:
        SystemExit: when the file does not exist, so ``monai.bundle run`` ends with that message and status 1.
    """
    if os.path.isfile(path):
        return path
    raise SystemExit(
        f"No trained weights at {os.path.abspath(path)}.\n"
        f"Train them with:\n    {train_command}\n"
        "which saves the best checkpoint there, or put a state dict saved from this network at that path "
        "(or point --ckpt_path at it)."
    )
