"""Group restart policies, with LeaderWorkerSet's names and meaning (pure).

Data flow: `spec.failurePolicy.restartPolicy` and what the reconciler remembers about a group (the
container restart counts of its pods when it first became Ready this life, `GroupMemory`) →
`restart_rule()` → how observe.py counts restarts for that group.

- RecreateGroupOnPodRestart: any container restart fails the group (it is recreated whole).
- RecreateGroupAfterStart (default): restarts before the group first became Ready do not count;
  a slow load killed by its startup probe is retried by the kubelet within the probe's budget,
  instead of the group being recreated over and over. Restarts after that do count.
- None: container restarts never recreate the group (a pod that fails or disappears still does,
  per `failurePolicy.action`).

The "first became Ready" mark lives in memory; after an operator restart a group whose last
reported state was Ready counts every restart (as it would have), else none until it is Ready.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

ON_POD_RESTART: Final = "RecreateGroupOnPodRestart"
AFTER_START: Final = "RecreateGroupAfterStart"
NONE: Final = "None"
POLICIES: Final = (ON_POD_RESTART, AFTER_START, NONE)


@dataclass(frozen=True)
class RestartRule:
    """What observe_group is told: restarts counted above `baseline` (None: all), or ignored."""

    baseline: Mapping[str, int] | None = None
    ignore: bool = False


def restart_rule(policy: str, started: Mapping[str, int] | None, reported_ready: bool) -> RestartRule:
    """The rule for one group under `policy`; `started` is the pods' restart counts when the group
    first became Ready (None: not yet, as far as this process knows); `reported_ready`: the status
    last showed it Ready."""
    if policy == NONE:
        return RestartRule(ignore=True)
    if policy == ON_POD_RESTART:
        return RestartRule()
    if started is not None:
        return RestartRule(baseline=started)
    return RestartRule() if reported_ready else RestartRule(ignore=True)
