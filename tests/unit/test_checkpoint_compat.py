"""Checkpoints pickled by the real library stacks of each era load to bit-identical params.

Each case runs tests/compat/release_era_writer.py (standalone: numpy and ml_dtypes only) inside a
side virtualenv that this test creates with `python -m venv` + `pip install numpy==X ml_dtypes==Y`
and caches under ~/.cache/grok-operator/checkpoint-compat/<python, numpy, ml_dtypes versions>/.
Cost: cold 10-35 s per environment (3 min for all five the first time, downloads included, on a
loaded machine); warm, the ten cases take 6 s. The files therefore carry those versions' own
pickles: numpy 1.26's `numpy.core.multiarray`, the bfloat16 dtype flags of ml_dtypes before 0.6
(80) and from 0.6 (64), the class as `__main__.` or `model.QuantizedWeight8bit`. The writer's
contents are a fixed integer formula, regenerated here by importing the same script.
When a side environment cannot be created the test skips locally and FAILS in CI (CI=true).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import jax
import ml_dtypes
import numpy as np
import pytest

from grok_worker.checkpoint import load_checkpoint, save_checkpoint
from grok_worker.checkpoint.pickle_index import index_leaf
from grok_worker.model_config import grok_architecture

WRITER = Path(__file__).resolve().parents[1] / "compat" / "release_era_writer.py"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "grok-operator" / "checkpoint-compat"
#: The matrix: (numpy, ml_dtypes) pins installed together in one side environment.
STACKS = [
    ("1.26.4", "0.2.0"),
    ("1.26.4", "0.3.2"),
    ("1.26.4", "0.4.1"),
    ("1.26.4", "0.5.4"),
    ("2.4.6", "0.6.0"),
]
#: Big enough that expert weights and the embedding lie outside pickle frames (>= 64 KiB).
CFG = grok_architecture(
    "compat", vocab_size=512, d_model=64, n_layers=2, n_q_heads=4, n_kv_heads=2, head_dim=16, ffn_size=128
)


def _writer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release_era_writer", WRITER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _side_python(numpy_version: str, ml_dtypes_version: str) -> Path:
    """The interpreter of a cached side environment with exactly these two packages."""
    py = f"py{sys.version_info.major}.{sys.version_info.minor}"
    env = CACHE / f"{py}_numpy-{numpy_version}_ml_dtypes-{ml_dtypes_version}"
    python = env / "bin" / "python"
    if python.exists():
        return python
    tmp = env.with_name(env.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True, capture_output=True, timeout=120)
        pins = [f"numpy=={numpy_version}", f"ml_dtypes=={ml_dtypes_version}"]
        subprocess.run(
            [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "--only-binary=:all:", *pins],
            check=True,
            capture_output=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        stderr = getattr(e, "stderr", b"") or b""
        message = f"cannot create the numpy {numpy_version} / ml_dtypes {ml_dtypes_version} environment: {e}: {stderr.decode()[-800:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    tmp.rename(env)  # venv scripts hold absolute paths, but we only ever run bin/python -m ...
    return env / "bin" / "python"


def _spec_file(tmp_path: Path) -> Path:
    tensors = [
        [s.index, list(s.shape), list(s.scales_shape) if s.quantized else None] for s in CFG.tensor_specs()
    ]
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"tensors": tensors}))
    return path


def _expected_checkpoint(tmp_path: Path) -> Path:
    """The same contents written by this process's stack with the project's own writer."""
    from grok_worker.checkpoint import QuantizedWeight8bit

    w = _writer()
    leaves: dict[int, object] = {}
    for s in CFG.tensor_specs():
        if s.quantized:
            leaves[s.index] = QuantizedWeight8bit(
                weight=w.values(s.index, s.shape, "int8"),
                scales=w.values(s.index, s.scales_shape, "bfloat16"),
            )
        else:
            leaves[s.index] = w.values(s.index, s.shape, "float32")
    save_checkpoint(leaves, CFG, tmp_path / "expected")
    return tmp_path / "expected"


def _pickled_names(directory: Path) -> str:
    return (directory / "ckpt-0" / "tensor00002_000").read_bytes()[:400].decode("latin1")


@pytest.mark.slow
@pytest.mark.parametrize("module", ["__main__", "model"])
@pytest.mark.parametrize(("numpy_version", "ml_dtypes_version"), STACKS)
def test_checkpoint_pickled_by_a_real_old_stack_loads_bit_identical(
    tmp_path: Path, numpy_version: str, ml_dtypes_version: str, module: str
) -> None:
    python = _side_python(numpy_version, ml_dtypes_version)
    out = tmp_path / "old"
    done = subprocess.run(
        [str(python), str(WRITER), str(_spec_file(tmp_path)), str(out), module],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert done.stdout.split() == [numpy_version, ml_dtypes_version]  # the old stack really wrote it
    names = _pickled_names(out)
    assert f"{module}\x94\x8c\x13QuantizedWeight8bit" in names
    assert ("numpy.core.multiarray" if numpy_version.startswith("1.") else "numpy._core.multiarray") in names
    big = index_leaf(out / "ckpt-0" / "tensor00002_000")[0]
    assert big.weight is not None
    assert big.weight.payload.inline is None  # located, not read
    flags_before = np.dtype(ml_dtypes.bfloat16).flags

    got = load_checkpoint(out, CFG)
    want = load_checkpoint(_expected_checkpoint(tmp_path), CFG)

    assert np.dtype(ml_dtypes.bfloat16).flags == flags_before
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert (a.dtype, a.shape) == (b.dtype, b.shape)
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
