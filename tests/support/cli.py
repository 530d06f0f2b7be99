"""The ``memvault`` command as a user runs it: the installed console script in a subprocess,
with no ``MEMVAULT_*`` variable but those a test sets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def memvault_executable() -> str:
    """The installed console script next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("memvault")
    if beside.exists():
        return str(beside)
    found = shutil.which("memvault")
    if found is None:
        pytest.skip("the memvault console script is not installed")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVAULT_")}
    env.update(extra)
    return env


CompletedProcess = subprocess.CompletedProcess[str]


def run(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [memvault_executable(), *args],
        env=env if env is not None else clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
