"""Grok-1 in JAX: config, params, KV cache, the forward pass and its sharding.

Public API (see docs/model.md):
- `ModelConfig`, `PRESETS`, `config_from_contract` (re-exported from `grok_worker.model_config`,
  which the operator imports without JAX);
- `init_params`, `Params`, `QuantizedWeight`;
- `init_cache`, `KVCache`, `insert`;
- `forward` (and `forward_groups`: several groups of rows, each over its own cache, in one pass
  over the weights), `prefill`, `decode_step` and their jitted forms (`*_jit`, cfg static; decode donates
  the cache).
Sharding: `grok_worker.shard_plan` (the plan, no JAX) -> `grok_worker.model.sharding` (meshes and
NamedShardings) -> `grok_worker.model.parallel` (the per-device forward's collectives);
`grok_worker.model.aot` compiles the steps ahead of time on abstract weights (`grok-worker plan`).
"""

from grok_worker.model.cache import KVCache, init_cache, insert
from grok_worker.model.layers import QuantizedWeight, dequantize
from grok_worker.model.params import Params, init_params
from grok_worker.model.transformer import (
    Rows,
    decode_step,
    decode_step_jit,
    forward,
    forward_groups,
    forward_jit,
    insert_jit,
    prefill,
    prefill_jit,
)
from grok_worker.model_config import PRESETS, ModelConfig, config_from_contract, get_preset

__all__ = [
    "PRESETS",
    "KVCache",
    "ModelConfig",
    "Params",
    "QuantizedWeight",
    "Rows",
    "config_from_contract",
    "decode_step",
    "decode_step_jit",
    "dequantize",
    "forward",
    "forward_groups",
    "forward_jit",
    "get_preset",
    "init_cache",
    "init_params",
    "insert",
    "insert_jit",
    "prefill",
    "prefill_jit",
]
