"""Checkpoint integrity: `grok-worker checkpoint manifest|verify`, the loader's size and digest
checks, and a worker whose checkpoint fails verification reporting it (about 15 s)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from grok_worker.checkpoint import CheckpointFormatError, load_checkpoint
from grok_worker.checkpoint.manifest import MANIFEST_NAME
from grok_worker.cli import main
from grok_worker.model import PRESETS

CFG = PRESETS["tiny"]


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    assert main(["make-checkpoint", "--preset", "tiny", "--seed", "0", str(tmp_path / "c")]) == 0
    return tmp_path / "c"


def _flip(ckpt: Path) -> Path:
    """Flip one byte inside one file's array data: same size, the pickle still parses."""
    path = ckpt / "ckpt-0" / "tensor00003_000"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    return path


def _cut(ckpt: Path) -> Path:
    path = ckpt / "ckpt-0" / "tensor00005_000"
    path.write_bytes(path.read_bytes()[:-1])
    return path


def _rewrite(ckpt: Path) -> None:
    """Write the same checkpoint again (it matches its manifest again)."""
    assert main(["make-checkpoint", "--preset", "tiny", "--seed", "0", str(ckpt)]) == 0


def test_manifest_lists_every_file_with_its_size_and_sha256(
    ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["checkpoint", "manifest", str(ckpt)]) == 0
    files = json.loads((ckpt / MANIFEST_NAME).read_text())["files"]
    on_disk = sorted((ckpt / "ckpt-0").iterdir())
    assert sorted(files) == [p.name for p in on_disk]
    for p in on_disk:
        assert files[p.name] == {
            "size": p.stat().st_size,
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        }
    assert main(["checkpoint", "verify", str(ckpt / "ckpt-0")]) == 0
    err = capsys.readouterr().err
    assert "verifying [" in err
    assert "100.0%" in err
    assert "all files match the manifest" in err


def test_verify_names_each_mismatching_file(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checkpoint", "manifest", str(ckpt)]) == 0
    _flip(ckpt)
    _cut(ckpt)
    (ckpt / "ckpt-0" / "tensor00007_000").unlink()
    assert main(["checkpoint", "verify", str(ckpt)]) == 1
    err = capsys.readouterr().err
    assert "MISMATCH tensor00005_000: size" in err
    assert "MISMATCH tensor00007_000: missing" in err
    _rewrite(ckpt)  # sizes are compared first, digests once every size agrees
    _flip(ckpt)
    assert main(["checkpoint", "verify", str(ckpt)]) == 1
    err = capsys.readouterr().err
    assert "MISMATCH tensor00003_000: sha256" in err
    assert err.count("MISMATCH") == 1


def test_loader_checks_sizes_always_and_digests_when_asked(ckpt: Path) -> None:
    with pytest.raises(CheckpointFormatError, match=rf"verify is true but there is no {MANIFEST_NAME}"):
        load_checkpoint(ckpt, CFG, verify=True)
    assert main(["checkpoint", "manifest", str(ckpt)]) == 0
    load_checkpoint(ckpt, CFG, verify=True)
    _cut(ckpt)
    with pytest.raises(
        CheckpointFormatError, match=r"1 file\(s\) differ .*tensor00005_000: size \d+ bytes, manifest says"
    ):
        load_checkpoint(ckpt, CFG)
    _rewrite(ckpt)
    _flip(ckpt)
    load_checkpoint(ckpt, CFG)  # same sizes: without verify the flipped byte goes unseen
    with pytest.raises(CheckpointFormatError, match=r"tensor00003_000: sha256 .*copy those files again"):
        load_checkpoint(ckpt, CFG, verify=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_a_worker_whose_checkpoint_fails_verification_says_so(ckpt: Path, tmp_path: Path) -> None:
    assert main(["checkpoint", "manifest", str(ckpt)]) == 0
    _cut(ckpt)
    config = tmp_path / "worker.json"
    config.write_text(
        json.dumps(
            {
                "model": {"preset": "tiny", "checkpoint_path": str(ckpt), "checkpoint_verify": True},
                "serving": {"port": _free_port(), "metrics_port": 0},
            }
        )
    )
    log = tmp_path / "termination-log"
    log.write_text("")
    env = dict(os.environ, GROK_TERMINATION_LOG=str(log), JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-m", "grok_worker", "serve", "--config", str(config), "--bind", "127.0.0.1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    message = log.read_text()
    assert message.startswith("loading failed: ")
    assert "tensor00005_000: size" in message
    assert "differ from checkpoint-manifest.json" in message


def test_the_worker_reports_verification_and_its_share_in_its_load_progress(ckpt: Path) -> None:
    from grok_worker.contract import GroupEnv, ModelSection, ServingSection, WorkerConfig
    from grok_worker.engine.model_engine import model_factory
    from grok_worker.server.config import ResolvedConfig

    assert main(["checkpoint", "manifest", str(ckpt)]) == 0
    model = ModelSection(preset="tiny", checkpoint_path=str(ckpt), checkpoint_verify=True)
    factory, _ = model_factory(
        ResolvedConfig(WorkerConfig(model=model, serving=ServingSection(max_seq_len=64)), GroupEnv(), (16,))
    )
    seen: list[tuple[float, str]] = []
    factory(lambda fraction, message: seen.append((fraction, message)))
    hashing = [f for f, m in seen if m.startswith("verifying sha256:")]
    loading = [f for f, m in seen if "(this host's share)" in m]
    assert hashing
    assert loading
    assert max(hashing) <= 0.5 <= min(loading)
    assert seen[-1][0] == 1.0
