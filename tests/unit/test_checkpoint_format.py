"""Release-format checkpoints: round trip, the release's exact pickles, and every refusal."""

from __future__ import annotations

import os
import pickle
import pickletools
import shutil
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
import pytest

from grok_worker.checkpoint import CheckpointFormatError, load_checkpoint, read_leaf, save_checkpoint
from grok_worker.checkpoint.loader import load_checkpoint_with_stats
from grok_worker.checkpoint.pickle_index import index_leaf
from grok_worker.checkpoint.release_format import QuantizedWeight8bit
from grok_worker.model import PRESETS, QuantizedWeight, init_params
from grok_worker.model_config import Quantization, grok_architecture

CFG = grok_architecture("mini", vocab_size=64, d_model=32, n_layers=2, n_q_heads=4, n_kv_heads=2, head_dim=8)
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "release-12L" / "ckpt-0"


def _globals(path: Path) -> set[str]:
    """Every string constant in a pickle (module and class names among them)."""
    return {str(arg) for op, arg, _ in pickletools.genops(path.read_bytes()) if op.name == "SHORT_BINUNICODE"}


@pytest.mark.parametrize("quantization", ["int8", "bf16"])
def test_round_trip_preserves_every_tensor(tmp_path: Path, quantization: Quantization) -> None:
    params = init_params(CFG, jax.random.key(3), quantization)
    seen: list[tuple[int, int]] = []
    save_checkpoint(params, CFG, tmp_path, quantization)
    loaded, stats = load_checkpoint_with_stats(
        tmp_path, CFG, quantization=quantization, progress=lambda d, t: seen.append((d, t))
    )
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded), strict=True):
        assert a.dtype == b.dtype
        assert a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    files = sorted((tmp_path / "ckpt-0").iterdir())
    tensor_bytes = sum(a.nbytes for f in files for a in index_leaf(f)[0].arrays())
    assert seen[-1][0] == seen[-1][1] == stats.bytes_read == stats.bytes_to_read == tensor_bytes
    assert stats.file_bytes == sum(p.stat().st_size for p in (tmp_path / "ckpt-0").iterdir())
    assert len(os.listdir(tmp_path / "ckpt-0")) == 2 + 12 * CFG.n_layers


def test_written_files_use_the_release_class_and_module_names(tmp_path: Path) -> None:
    save_checkpoint(init_params(CFG, jax.random.key(0)), CFG, tmp_path)
    names = _globals(tmp_path / "ckpt-0" / "tensor00002_000")  # layer 0 moe/linear
    assert {"__main__", "QuantizedWeight8bit", "numpy.core.multiarray", "ml_dtypes", "bfloat16"} <= names
    assert "numpy._core.multiarray" not in names
    assert "grok_worker" not in " ".join(names)
    plain = _globals(tmp_path / "ckpt-0" / "tensor00000_000")
    assert "QuantizedWeight8bit" not in plain


def test_reads_the_release_golden_files() -> None:
    leaf = read_leaf(GOLDEN / "tensor00002_000")
    assert isinstance(leaf, QuantizedWeight8bit)
    assert leaf.weight.dtype == np.int8
    assert leaf.scales.dtype == ml_dtypes.bfloat16
    embed = read_leaf(GOLDEN / "tensor00000_000")
    assert isinstance(embed, np.ndarray)
    assert embed.dtype == np.float32
    assert embed.shape == (256, 64)


class _RunsCode:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("touch /tmp/grok-pwned",))


def test_a_pickle_that_runs_code_is_refused_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "tensor00000_000"
    bad.write_bytes(pickle.dumps(_RunsCode(), protocol=4))
    with pytest.raises(CheckpointFormatError, match=r"tensor00000_000.*refusing to unpickle .*system"):
        read_leaf(bad)
    assert not Path("/tmp/grok-pwned").exists()


def _checkpoint(tmp_path: Path) -> Path:
    save_checkpoint(init_params(CFG, jax.random.key(0)), CFG, tmp_path)
    return tmp_path / "ckpt-0"


def test_shape_mismatch_names_the_tensor(tmp_path: Path) -> None:
    d = _checkpoint(tmp_path)
    wrong = grok_architecture(
        "mini", vocab_size=64, d_model=32, n_layers=2, n_q_heads=4, n_kv_heads=2, head_dim=8, ffn_size=48
    )
    with pytest.raises(
        CheckpointFormatError, match=r"tensor transformer/decoder_layer_0/moe/linear .*\[8, 32, 48\]"
    ):
        load_checkpoint(d.parent, wrong)


def test_truncated_missing_and_extra_files_are_clear_errors(tmp_path: Path) -> None:
    d = _checkpoint(tmp_path)
    f = d / "tensor00005_000"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointFormatError, match=r"tensor00005_000: .*truncated"):
        load_checkpoint(tmp_path, CFG)
    f.unlink()
    with pytest.raises(CheckpointFormatError, match=r"tensor00005_000: missing.*multi_head_attention/key"):
        load_checkpoint(tmp_path, CFG)
    f.write_bytes(data)
    shutil.copy(f, d / "tensor00026_000")
    with pytest.raises(CheckpointFormatError, match=r"tensor00026_000.*n_layers"):
        load_checkpoint(tmp_path, CFG)
    with pytest.raises(CheckpointFormatError, match="no release checkpoint"):
        load_checkpoint(tmp_path / "nowhere", CFG)


def test_wrong_dtypes_are_refused(tmp_path: Path) -> None:
    d = _checkpoint(tmp_path)
    norm = d / "tensor00001_000"
    norm.write_bytes(pickle.dumps(np.ones(32, np.float64), protocol=4))
    with pytest.raises(CheckpointFormatError, match=r"tensor00001_000.*float64"):
        load_checkpoint(tmp_path, CFG)
    norm.write_bytes(pickle.dumps(np.ones(32, np.int8), protocol=4))
    with pytest.raises(CheckpointFormatError, match="language_model/rms_norm has dtype int8"):
        load_checkpoint(tmp_path, CFG)


def test_int8_checkpoint_loads_as_bf16_and_plain_arrays_do_not_load_as_int8(tmp_path: Path) -> None:
    params = init_params(CFG, jax.random.key(0))
    save_checkpoint(params, CFG, tmp_path / "q")
    bf = load_checkpoint(tmp_path / "q", CFG, quantization="bf16")
    wq = params.layers[0]["wq"]
    assert isinstance(wq, QuantizedWeight)
    from grok_worker.model import dequantize

    np.testing.assert_allclose(
        np.asarray(bf.layers[0]["wq"], np.float32), np.asarray(dequantize(wq), np.float32)
    )
    save_checkpoint(bf, CFG, tmp_path / "b", "bf16")
    with pytest.raises(CheckpointFormatError, match=r"set model\.quantization to bf16"):
        load_checkpoint(tmp_path / "b", CFG)


def test_make_checkpoint_command_writes_a_loadable_tiny_checkpoint(tmp_path: Path) -> None:
    from grok_worker.cli import main

    assert main(["make-checkpoint", "--preset", "tiny", "--seed", "0", str(tmp_path)]) == 0
    loaded = load_checkpoint(tmp_path, PRESETS["tiny"])
    ref = init_params(PRESETS["tiny"], jax.random.key(0))
    for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
