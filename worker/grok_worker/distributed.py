"""Join this process to its replica group with `jax.distributed` (multi-host serving).

The operator sets the group environment (contract.GroupEnv: coordinator address, process count,
process id); `initialize_from_env` turns it into one `jax.distributed.initialize` call, after
which `jax.devices()` lists every device of the group and one mesh spans all hosts. A
single-process group is a no-op. On CPU, cross-process collectives need "gloo".
"""

from __future__ import annotations

import jax

from grok_worker.contract import Env, GroupEnv


def initialize_from_env(group: GroupEnv, platform: str | None = None) -> bool:
    """Call jax.distributed.initialize for a multi-process group; return True if it did.

    Must run before anything touches a JAX device. `platform` (e.g. "cpu") is only used to pick
    the CPU collectives; by default it is read from JAX_PLATFORMS.
    """
    if not group.multi_host:
        return False
    if not group.coordinator_address:
        raise ValueError(
            f"{Env.COORDINATOR_ADDRESS} must be set (host:port) for a group of {group.num_processes}"
        )
    import os

    platforms = (platform or os.environ.get("JAX_PLATFORMS", "")).lower()
    if "cpu" in platforms:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # type: ignore[no-untyped-call]
    local_ids = (
        list(range(group.local_device_count)) if group.local_device_count and "cpu" not in platforms else None
    )
    jax.distributed.initialize(
        coordinator_address=group.coordinator_address,
        num_processes=group.num_processes,
        process_id=group.process_id,
        local_device_ids=local_ids,
    )
    return True
