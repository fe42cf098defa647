"""Model directories replaced in one step: a server loading a model never sees half of one."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def save_atomically(output: Path, write: Callable[[Path], None]) -> Path:
    """Let `write` fill a temp dir beside `output`, then swap it in for `output`; the resolved path."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.new-", dir=output.parent))
    try:
        write(staging)
        # mkdtemp and the safetensors writer make owner-only files; serving may run as another user.
        staging.chmod(0o755)
        for file in staging.iterdir():
            file.chmod(0o644 if file.is_file() else 0o755)
        if output.exists():
            # A directory cannot be replaced in one rename; move the old one aside first.
            retired = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
            output.rename(retired / output.name)
            staging.rename(output)
            shutil.rmtree(retired)
        else:
            staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output
