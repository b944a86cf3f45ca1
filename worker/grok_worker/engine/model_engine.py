"""The real engine: the Grok-1 model behind the `Engine` interface, one jit boundary per step kind.

Data flow:
- `prefill`: prompt ids -> padded to the smallest bucket, [1, T_bucket] -> jitted
  `model.prefill` + `sample` at the last real position -> (prefix cache of T_bucket positions, the
  first token). One compilation per bucket, all done in `warmup` before the worker reports SERVING.
- chunked prefill (prompts whose bucket is longer than `prefill_chunk`): `begin_prefill` makes an empty prefix
  cache of `max_prompt_len` positions; each `prefill_chunk` runs the jitted `model.forward` on the
  next [1, prefill_chunk] tokens at their own positions (the cache donated, so K/V are written in
  place and each chunk attends to the chunks before it) + `sample` at the prompt's last position,
  whose result counts only after the last chunk. One compilation, done in `warmup`.
- `insert`: jitted `model.insert` of the prefix into decode row `slot`, plus that row's next input
  token and position, in one `DecodeState` pytree that is donated (updated in place).
- `decode`: jitted `model.forward` of every row's next token ([max_batch, 1]) + `sample`, with the
  state donated; the sampled tokens become the next step's inputs on device, so only the per-slot
  sampling parameters go host -> device and only tokens and log-probs come back.
- `decode_with_chunk`: the decode step and the next prefill chunk in one jitted
  `model.forward_groups` (decode rows over the decode cache, the chunk over its prefix cache, both
  donated): the weights are read once for both, and each group's results are those of its own step.
Shapes are static: `max_batch`, `max_seq_len`, the bucket lengths and the chunk, so the programs are
one prefill per whole-prompt bucket, one insert per prefix shape, the chunk, the decode step and the
decode step with a chunk, all compiled in `warmup`. On a multi-host mesh every
input is a replicated global array and every output is replicated, so each host reads its local copy.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from grok_worker.contract import prefill_bucket_problem, sequence_problem
from grok_worker.engine.api import (
    EngineSpec,
    Prefix,
    ProgressFn,
    SampledToken,
    SamplingParams,
    bucket_for,
)
from grok_worker.engine.sampling import SlotSampling, sample
from grok_worker.model import (
    KVCache,
    ModelConfig,
    Params,
    Rows,
    forward,
    forward_groups,
    init_cache,
    insert,
    prefill,
)
from grok_worker.model.sharding import make_mesh, shard_cache
from grok_worker.model_config import BOS_ID, EOS_ID, PAD_ID

if TYPE_CHECKING:
    from grok_worker.contract import GroupEnv
    from grok_worker.engine.text import Tokenizer
    from grok_worker.server.app import EngineFactory
    from grok_worker.server.config import ResolvedConfig

log = logging.getLogger(__name__)


class DecodeState(NamedTuple):
    cache: KVCache
    #: Next input token of each row [B] int32 (the last sampled token).
    tokens: jax.Array
    #: Position of that token [B] int32.
    positions: jax.Array


class _ModelPrefix(Prefix):
    def __init__(self, cache: KVCache, length: int, first: jax.Array, sampling: SamplingParams) -> None:
        self.cache, self.length, self.first, self.sampling = cache, length, first, sampling


class _ChunkedPrefix(_ModelPrefix):
    """A prefix filled chunk by chunk: `first` is valid once `done` reaches the prompt's length."""

    def __init__(self, cache: KVCache, prompt_ids: Sequence[int], sampling: SamplingParams) -> None:
        super().__init__(cache, len(prompt_ids), jnp.zeros((1,), jnp.int32), sampling)
        self.prompt_ids = list(prompt_ids)
        self.done = 0


def _prefill_and_sample(
    cfg: ModelConfig, params: Params, tokens: jax.Array, length: jax.Array, sampling: tuple[jax.Array, ...]
) -> tuple[jax.Array, jax.Array, KVCache]:
    """tokens [1, T], length [] -> first token [1], its logprob [1], prefix cache (max_len T)."""
    logits, cache = prefill(params, cfg, tokens, length)  # [1, T, V]
    last = jax.lax.dynamic_index_in_dim(logits, length - 1, axis=1, keepdims=False)  # [1, V]
    temperature, top_p, top_k, seeds = sampling
    token, logprob = sample(last, temperature, top_p, top_k, seeds, length[None])
    return token, logprob, cache


def _chunk_rows(
    cfg: ModelConfig, cache: KVCache, tokens: jax.Array, start: jax.Array, length: jax.Array
) -> Rows:
    """tokens [1, C] at positions start..start+C-1 of a prompt of `length` (those past its end
    become padding), over the prefix cache."""
    c = tokens.shape[1]
    positions = start + jnp.arange(c, dtype=jnp.int32)[None, :]  # [1, C]
    return Rows(jnp.where(positions < length, tokens, PAD_ID), cache, positions)


def _sample_chunk(
    logits: jax.Array, start: jax.Array, length: jax.Array, sampling: tuple[jax.Array, ...]
) -> tuple[jax.Array, jax.Array]:
    """The token sampled at the prompt's last position from a chunk's logits [1, C, V] (meaningful
    for the chunk holding that position) and its logprob, [1] each."""
    at = jnp.clip(length - 1 - start, 0, logits.shape[1] - 1)
    last = jax.lax.dynamic_index_in_dim(logits, at, axis=1, keepdims=False)  # [1, V]
    temperature, top_p, top_k, seeds = sampling
    return sample(last, temperature, top_p, top_k, seeds, length[None])


def _chunk_and_sample(
    cfg: ModelConfig,
    params: Params,
    cache: KVCache,
    tokens: jax.Array,
    start: jax.Array,
    length: jax.Array,
    sampling: tuple[jax.Array, ...],
) -> tuple[jax.Array, jax.Array, KVCache]:
    """tokens [1, C] at positions start..start+C-1 of a prompt of `length` -> the token sampled at
    the prompt's last position [1] (meaningful for the chunk holding it), its logprob [1], the cache."""
    rows = _chunk_rows(cfg, cache, tokens, start, length)
    logits, cache = forward(params, cfg, rows.tokens, rows.cache, rows.positions)  # [1, C, V]
    token, logprob = _sample_chunk(logits, start, length, sampling)
    return token, logprob, cache


def _insert(
    state: DecodeState, prefix: KVCache, slot: jax.Array, length: jax.Array, first: jax.Array
) -> DecodeState:
    cache = insert(state.cache, prefix, slot, length)
    return DecodeState(cache, state.tokens.at[slot].set(first[0]), state.positions.at[slot].set(length))


def _decode_rows(state: DecodeState) -> Rows:
    """Every decode row's next token at its position ([B, 1] each); idle rows must stay in range."""
    positions = jnp.minimum(state.positions, state.cache.max_len - 1)
    return Rows(state.tokens[:, None], state.cache, positions[:, None])


def _sample_decode(
    logits: jax.Array, rows: Rows, cache: KVCache, sampling: tuple[jax.Array, ...]
) -> tuple[jax.Array, jax.Array, DecodeState]:
    """Decode logits [B, 1, V] -> each row's sampled token and logprob [B], and the next state."""
    next_positions = rows.positions[:, 0] + 1
    temperature, top_p, top_k, seeds = sampling
    tokens, logprobs = sample(logits[:, 0], temperature, top_p, top_k, seeds, next_positions)
    return tokens, logprobs, DecodeState(cache, tokens, next_positions)


def _decode_and_sample(
    cfg: ModelConfig, params: Params, state: DecodeState, sampling: tuple[jax.Array, ...]
) -> tuple[jax.Array, jax.Array, DecodeState]:
    rows = _decode_rows(state)
    logits, cache = forward(params, cfg, rows.tokens, rows.cache, rows.positions)  # [B, 1, V]
    return _sample_decode(logits, rows, cache, sampling)


def _decode_chunk_and_sample(
    cfg: ModelConfig,
    params: Params,
    state: DecodeState,
    sampling: tuple[jax.Array, ...],
    prefix: KVCache,
    tokens: jax.Array,
    start: jax.Array,
    length: jax.Array,
    chunk_sampling: tuple[jax.Array, ...],
) -> tuple[jax.Array, jax.Array, DecodeState, jax.Array, jax.Array, KVCache]:
    """`_decode_and_sample` and `_chunk_and_sample` in one forward pass (one read of the weights):
    the B decode rows over the decode cache and the chunk's C tokens over the prefix cache."""
    rows = _decode_rows(state)
    chunk = _chunk_rows(cfg, prefix, tokens, start, length)
    (logits, cache), (chunk_logits, prefix) = forward_groups(params, cfg, (rows, chunk))
    next_tokens, logprobs, state = _sample_decode(logits, rows, cache, sampling)
    first, first_logprob = _sample_chunk(chunk_logits, start, length, chunk_sampling)
    return next_tokens, logprobs, state, first, first_logprob, prefix


class ModelEngine:
    """Implements `grok_worker.engine.api.Engine` over `grok_worker.model`."""

    def __init__(
        self,
        cfg: ModelConfig,
        params: Params,
        max_batch: int,
        max_seq_len: int,
        buckets: Sequence[int],
        mesh: Mesh | None = None,
        prefill_chunk: int = 0,
    ) -> None:
        for field, problem in (
            ("serving.max_seq_len", sequence_problem(max_seq_len, cfg.max_seq_len)),
            ("serving.prefill_buckets", prefill_bucket_problem(buckets, max_seq_len)),
        ):
            if problem is not None:
                raise ValueError(f"{field}: {problem}")
        self.cfg = cfg
        self.params = params
        self.mesh = mesh
        chunk = prefill_chunk if 0 < prefill_chunk < buckets[-1] else 0
        self._spec = EngineSpec(
            cfg.name, max_batch, max_seq_len, cfg.vocab_size, EOS_ID, tuple(buckets), chunk
        )
        self._replicated = NamedSharding(mesh, PartitionSpec()) if mesh is not None else None  # type: ignore[no-untyped-call]
        out = self._replicated
        self._prefill = jax.jit(
            functools.partial(_prefill_and_sample, cfg),
            out_shardings=None if out is None else (out, out, None),
        )
        self._chunk = jax.jit(
            functools.partial(_chunk_and_sample, cfg),
            donate_argnums=1,
            out_shardings=None if out is None else (out, out, None),
        )
        self._insert = jax.jit(_insert, donate_argnums=0)
        self._decode = jax.jit(
            functools.partial(_decode_and_sample, cfg),
            donate_argnums=1,
            out_shardings=None if out is None else (out, out, None),
        )
        self._fused = jax.jit(
            functools.partial(_decode_chunk_and_sample, cfg),
            donate_argnums=(1, 3),
            out_shardings=None if out is None else (out, out, None, out, out, None),
        )
        cache = shard_cache(init_cache(cfg, max_batch, max_seq_len), cfg, mesh)
        zeros = self._put(np.zeros((max_batch,), np.int32))
        self._state = DecodeState(cache, zeros, self._put(np.zeros((max_batch,), np.int32)))
        self._sampling = SlotSampling(max_batch)

    @property
    def spec(self) -> EngineSpec:
        return self._spec

    def _put(self, value: np.ndarray) -> jax.Array:
        """Host array -> replicated device array (a global array on a multi-host mesh)."""
        if self._replicated is None:
            return jnp.asarray(value)
        return jax.make_array_from_callback(value.shape, self._replicated, lambda index: value[index])

    @staticmethod
    def _host(value: jax.Array) -> np.ndarray:
        """This host's copy of a replicated output."""
        return np.asarray(value.addressable_data(0))

    def warmup(self, progress: ProgressFn | None = None) -> None:
        """Compile every program serving uses: the prefill buckets no longer than a chunk, insert,
        and with chunking the chunk alone and the chunk fused with the decode step; the decode step."""
        spec = self._spec
        # With chunking, only buckets no longer than a chunk are used whole: the others are not compiled.
        buckets = [b for b in spec.prefill_buckets if not spec.chunked(b)]
        steps = len(buckets) + 1 + (2 if spec.prefill_chunk else 0)
        done = 0

        def compiled(what: str, start: float) -> None:
            nonlocal done
            done += 1
            log.info("compiled %s in %.1fs", what, time.monotonic() - start)
            if progress:
                progress(done / steps, f"compiled {what}")

        for bucket in buckets:
            start = time.monotonic()
            prefix, _ = self.prefill([BOS_ID] * bucket, SamplingParams())
            self.insert(prefix, 0)
            compiled(f"prefill bucket {bucket}", start)
        if spec.prefill_chunk:
            start = time.monotonic()
            prefix = self.begin_prefill([BOS_ID] * spec.max_prompt_len, SamplingParams())
            while self.prefill_chunk(prefix) is None:
                pass
            self.insert(prefix, 0)
            compiled(f"prefill chunk {spec.prefill_chunk}", start)
            start = time.monotonic()
            self.decode_with_chunk(self.begin_prefill([BOS_ID], SamplingParams()))
            compiled(f"decode step (batch {spec.max_batch}) with a prefill chunk", start)
        start = time.monotonic()
        self.decode()
        compiled(f"decode step (batch {spec.max_batch})", start)

    def prefill(self, prompt_ids: Sequence[int], sampling: SamplingParams) -> tuple[Prefix, SampledToken]:
        length = len(prompt_ids)
        bucket = bucket_for(length, self._spec.prefill_buckets)
        tokens = np.zeros((1, bucket), np.int32)
        tokens[0, :length] = prompt_ids
        one = SlotSampling.single(sampling)
        token, logprob, cache = self._prefill(
            self.params,
            self._put(tokens),
            self._put(np.int32(length)),  # type: ignore[arg-type]
            tuple(self._put(a) for a in one.arrays()),
        )
        first = SampledToken(int(self._host(token)[0]), float(self._host(logprob)[0]))
        return _ModelPrefix(cache, length, token, sampling), first

    def begin_prefill(self, prompt_ids: Sequence[int], sampling: SamplingParams) -> Prefix:
        cache = shard_cache(init_cache(self.cfg, 1, self._spec.max_prompt_len), self.cfg, self.mesh)
        return _ChunkedPrefix(cache, prompt_ids, sampling)

    def _chunk_inputs(self, prefix: _ChunkedPrefix) -> tuple[int, tuple[object, ...]]:
        """The next chunk's length and its device inputs: tokens [1, C], start, length, sampling."""
        assert self._spec.prefill_chunk > 0
        size = self._spec.prefill_chunk
        tokens = np.zeros((1, size), np.int32)
        piece = prefix.prompt_ids[prefix.done : prefix.done + size]
        tokens[0, : len(piece)] = piece
        return len(piece), (
            self._put(tokens),
            self._put(np.int32(prefix.done)),  # type: ignore[arg-type]
            self._put(np.int32(prefix.length)),  # type: ignore[arg-type]
            tuple(self._put(a) for a in SlotSampling.single(prefix.sampling).arrays()),
        )

    def _chunk_ran(
        self, prefix: _ChunkedPrefix, n: int, token: jax.Array, logprob: jax.Array
    ) -> SampledToken | None:
        """Account for a chunk of n tokens; after the last, the first completion token."""
        prefix.done += n
        if prefix.done < prefix.length:
            return None
        prefix.first = token
        return SampledToken(int(self._host(token)[0]), float(self._host(logprob)[0]))

    def prefill_chunk(self, prefix: Prefix) -> SampledToken | None:
        assert isinstance(prefix, _ChunkedPrefix)
        n, inputs = self._chunk_inputs(prefix)
        token, logprob, prefix.cache = self._chunk(self.params, prefix.cache, *inputs)
        return self._chunk_ran(prefix, n, token, logprob)

    def decode_with_chunk(self, prefix: Prefix) -> tuple[list[SampledToken], SampledToken | None]:
        assert isinstance(prefix, _ChunkedPrefix)
        n, inputs = self._chunk_inputs(prefix)
        sampling = tuple(self._put(a) for a in self._sampling.arrays())
        tokens, logprobs, self._state, first, first_logprob, prefix.cache = self._fused(
            self.params, self._state, sampling, prefix.cache, *inputs
        )
        return self._sampled(tokens, logprobs), self._chunk_ran(prefix, n, first, first_logprob)

    def insert(self, prefix: Prefix, slot: int) -> None:
        assert isinstance(prefix, _ModelPrefix)
        self._state = self._insert(
            self._state,
            prefix.cache,
            self._put(np.int32(slot)),  # type: ignore[arg-type]
            self._put(np.int32(prefix.length)),  # type: ignore[arg-type]
            prefix.first,
        )
        self._sampling.set(slot, prefix.sampling)

    def decode(self) -> list[SampledToken]:
        sampling = tuple(self._put(a) for a in self._sampling.arrays())
        tokens, logprobs, self._state = self._decode(self.params, self._state, sampling)
        return self._sampled(tokens, logprobs)

    def _sampled(self, tokens: jax.Array, logprobs: jax.Array) -> list[SampledToken]:
        return [
            SampledToken(int(t), float(lp))
            for t, lp in zip(self._host(tokens), self._host(logprobs), strict=True)
        ]

    def release(self, slot: int) -> None:
        self._sampling.set(slot, SamplingParams())


def initialize_distributed(group: GroupEnv) -> None:
    """Join the group's processes with jax.distributed (before any JAX computation)."""
    from grok_worker.distributed import initialize_from_env

    initialize_from_env(group)


def load_tokenizer(path: str) -> Tokenizer | None:
    if not path:
        return None
    from grok_worker.tokenizer import Tokenizer as SentencePieceTokenizer

    return SentencePieceTokenizer(path)


def model_factory(config: ResolvedConfig, random_weights: bool = False) -> tuple[EngineFactory, ModelConfig]:
    """An EngineFactory for `grok-worker serve`; raises ConfigError on a bad model section."""
    from grok_worker.model_config import config_from_contract
    from grok_worker.server.config import ConfigError

    section = config.worker.model
    try:
        cfg = config_from_contract(section)
    except ValueError as err:
        raise ConfigError(f"model: {err}") from None
    serving = config.worker.serving
    too_long = sequence_problem(serving.max_seq_len, cfg.max_seq_len)
    if too_long is not None:
        raise ConfigError(f"serving.max_seq_len: {too_long}")
    if not random_weights and not section.checkpoint_path:
        raise ConfigError(
            "model.checkpoint_path is empty: pass --checkpoint DIR (or --random-weights for a demo)"
        )
    if not random_weights and not Path(section.checkpoint_path).is_dir():
        raise ConfigError(
            f"model.checkpoint_path={section.checkpoint_path!r} is not a directory; point it at the folder "
            "holding ckpt-0/ (or at ckpt-0/ itself)"
        )
    if section.tokenizer_path and not Path(section.tokenizer_path).is_file():
        raise ConfigError(
            f"model.tokenizer_path={section.tokenizer_path!r} does not exist; give a SentencePiece .model file"
        )

    def factory(progress: ProgressFn) -> tuple[ModelEngine, Tokenizer | None]:
        mesh_spec = config.mesh
        mesh = make_mesh(mesh_spec, cfg=cfg) if (mesh_spec.size > 1 or jax.process_count() > 1) else None
        if random_weights:
            from grok_worker.model import init_params
            from grok_worker.model.sharding import shard_params

            progress(0.0, "initialising random weights")
            params = shard_params(
                init_params(cfg, jax.random.key(0), section.quantization), cfg, section.quantization, mesh
            )
        else:
            from grok_worker.checkpoint.loader import load_checkpoint_with_stats

            verify = section.checkpoint_verify
            share = 0.5 if verify else 0.0  # of the load's progress range spent hashing

            def hashed(done: int, total: int) -> None:
                fraction = done / total if total else 1.0
                progress(share * fraction, f"verifying sha256: {done / 2**20:.0f} of {total / 2**20:.0f} MiB")

            def report(done: int, total: int) -> None:
                fraction = done / total if total else 1.0
                progress(
                    share + (1 - share) * fraction,
                    f"loaded {done / 2**20:.0f} of {total / 2**20:.0f} MiB (this host's share)",
                )

            params, stats = load_checkpoint_with_stats(
                section.checkpoint_path,
                cfg,
                mesh,
                report,
                section.quantization,
                verify=verify,
                verify_progress=hashed,
            )
            progress(1.0, f"loaded {stats.bytes_read / 2**20:.0f} MiB of {stats.file_bytes / 2**20:.0f} MiB")
        tokenizer = load_tokenizer(section.tokenizer_path)
        engine = ModelEngine(
            cfg, params, serving.max_batch, serving.max_seq_len, config.buckets, mesh, serving.prefill_chunk
        )
        return engine, tokenizer

    return factory, cfg


def greedy_reference(
    cfg: ModelConfig, params: Params, prompt: Sequence[int], n: int, max_len: int
) -> list[int]:
    """The model's own greedy decode, one request at a time with jitted `forward` (for tests)."""
    from grok_worker.model import forward_jit as forward

    cache = init_cache(cfg, 1, max_len)
    tokens = jnp.asarray([list(prompt)], jnp.int32)
    positions = jnp.arange(len(prompt), dtype=jnp.int32)[None, :]
    logits, cache = forward(params, cfg, tokens, cache, positions)
    out: list[int] = [int(jnp.argmax(logits[0, -1]))]
    for i in range(n - 1):
        pos = jnp.asarray([[len(prompt) + i]], jnp.int32)
        logits, cache = forward(params, cfg, jnp.asarray([[out[-1]]], jnp.int32), cache, pos)
        out.append(int(jnp.argmax(logits[0, -1])))
    return out


__all__ = ["DecodeState", "ModelEngine", "greedy_reference", "model_factory"]
