"""Fixtures shared by the end-to-end tests: one tiny release-format checkpoint per session, written
by the same `grok-worker make-checkpoint` command users run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-ckpt")
    command = [sys.executable, "-m", "grok_worker", "make-checkpoint", "--preset", "tiny", "--seed", "3"]
    subprocess.run([*command, str(directory)], check=True, timeout=300)
    return directory
