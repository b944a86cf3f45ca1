"""Capacity planner (pure): does one replica group's share of the model fit in its GPUs' memory?

Data flow: model dimensions (`grok_worker.model_config.ModelConfig`) + quantization + mesh + serving
limits + GPU memory → the worker's sharding plan (`grok_worker.shard_plan.device_plan`: which
slice of every weight and of the KV cache each device holds, the same plan the worker's shardings
are built from) → `MemoryPlan` (bytes per device for weights, KV cache and headroom, and whether
they fit). The reconciler refuses to create pods for a plan that does not fit and reports
`summary()` in the InsufficientDeviceMemory condition.

There is no byte arithmetic here: the largest per-device weight and KV-cache bytes over the mesh
come from the plan's index boxes (experts split over "expert", heads/FFN/vocabulary over "model",
KV heads over the part of "model" that divides them, batch slots over "data"). Headroom reserves a
fixed amount for the runtime and compiled programs plus a fraction of the device for activations and
allocator fragmentation (`grok-worker plan` shows XLA's own temporaries for a topology).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from grok_operator.quantity import human_bytes
from grok_worker.contract import MeshSpec
from grok_worker.model_config import ModelConfig
from grok_worker.shard_plan import device_plan

#: Fixed reserve per device: CUDA context, NCCL buffers, compiled XLA programs.
HEADROOM_FIXED_BYTES = 2 * 2**30
#: Reserve proportional to device memory: activations, XLA temporaries, fragmentation.
HEADROOM_FRACTION = 0.08


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


def plan_memory(
    model: ModelConfig,
    *,
    quantization: Literal["int8", "bf16"],
    mesh: MeshSpec,
    max_batch: int,
    max_seq_len: int,
    device_memory_bytes: int,
) -> MemoryPlan:
    """Per-device memory of one replica group under `mesh` (whose size is the group's device count)."""
    plan = device_plan(model, quantization, mesh, batch=max_batch, max_len=max_seq_len)
    headroom = HEADROOM_FIXED_BYTES + int(device_memory_bytes * HEADROOM_FRACTION)
    return MemoryPlan(
        devices=mesh.size,
        device_memory_bytes=device_memory_bytes,
        weights_bytes=plan.weights_bytes,
        kv_cache_bytes=plan.kv_cache_bytes,
        headroom_bytes=headroom,
    )
