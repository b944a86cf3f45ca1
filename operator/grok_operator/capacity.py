"""Capacity planner (pure): does one replica group's share of the model fit in its GPUs' memory?

Data flow: model dimensions (`grok_worker.model_config.ModelConfig`, the single source of weight
and KV byte counts) + quantization + mesh + serving limits + GPU memory → `MemoryPlan` (bytes per
device for weights, KV cache and headroom, and whether they fit). The reconciler refuses to create
pods for a plan that does not fit and reports `summary()` in the InsufficientDeviceMemory condition.

How the mesh splits the bytes (it mirrors the worker's sharding rules):
- weights are split across the expert and model axes and replicated across the data axis;
- the KV cache is split across the data axis (batch slots) and across the model axis up to the
  number of KV heads (beyond that, KV heads are replicated);
- headroom reserves a fixed amount for the runtime and compiled programs plus a fraction of the
  device for activations and allocator fragmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from grok_operator.quantity import human_bytes
from grok_worker.contract import MeshSpec

#: Fixed reserve per device: CUDA context, NCCL buffers, compiled XLA programs.
HEADROOM_FIXED_BYTES = 2 * 2**30
#: Reserve proportional to device memory: activations, XLA temporaries, fragmentation.
HEADROOM_FRACTION = 0.08


class ModelSizes(Protocol):
    """What the planner needs from a model description (`ModelConfig` satisfies it)."""

    @property
    def n_kv_heads(self) -> int: ...

    @property
    def kv_bytes_per_token(self) -> int: ...

    def param_bytes(self, quantization: Literal["int8", "bf16"] = "int8") -> int: ...


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes one GPU of a replica group must hold, and the GPU's memory."""

    devices: int
    device_memory_bytes: int
    weights_bytes: int
    kv_cache_bytes: int
    headroom_bytes: int

    @property
    def required_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.headroom_bytes

    @property
    def fits(self) -> bool:
        return self.required_bytes <= self.device_memory_bytes

    def summary(self) -> str:
        """The numbers in words, for a condition message and an Event."""
        verdict = "fits in" if self.fits else "exceeds"
        return (
            f"each of the {self.devices} GPUs needs {human_bytes(self.required_bytes)} "
            f"(weights {human_bytes(self.weights_bytes)} + KV cache {human_bytes(self.kv_cache_bytes)} "
            f"+ headroom {human_bytes(self.headroom_bytes)}), which {verdict} its "
            f"{human_bytes(self.device_memory_bytes)}"
        )

    def advice(self) -> str:
        """What to change when the plan does not fit."""
        return (
            "use more GPUs per replica (topology.hostsPerReplica or topology.gpusPerHost), GPUs with more "
            "memory (topology.gpuMemory), int8 quantization, or a smaller serving.maxBatch / "
            "serving.maxSequenceLength"
        )


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def plan_memory(
    model: ModelSizes,
    *,
    quantization: Literal["int8", "bf16"],
    mesh: MeshSpec,
    max_batch: int,
    max_seq_len: int,
    device_memory_bytes: int,
) -> MemoryPlan:
    """Per-device memory of one replica group under `mesh` (whose size is the group's device count)."""
    weight_shards = mesh.expert * mesh.model
    weights = _ceil_div(model.param_bytes(quantization), weight_shards)
    kv_total = max_batch * max_seq_len * model.kv_bytes_per_token
    kv_shards = mesh.data * min(mesh.model, model.n_kv_heads)
    kv = _ceil_div(kv_total, kv_shards)
    headroom = HEADROOM_FIXED_BYTES + int(device_memory_bytes * HEADROOM_FRACTION)
    return MemoryPlan(
        devices=mesh.size,
        device_memory_bytes=device_memory_bytes,
        weights_bytes=weights,
        kv_cache_bytes=kv,
        headroom_bytes=headroom,
    )
