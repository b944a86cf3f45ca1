"""One reconcile pass for one GrokDeployment: fetch, decide (pure), write only what differs.

Data flow:
  live object ─► validate (validation.py) ─► capacity plan (capacity.py)
  KubeApi.observe() ─► observe_groups (observe.py) ─► plan_groups (planner.py)
  render_children (render/) ─► apply children whose render hash differs, delete stale ones,
  delete the pods of groups to recreate or roll ─► status (status_report.py) ─► patch if different.

`DeploymentMemory` keeps what the API cannot tell us cheaply: which pods this operator deleted
itself (so their disappearance is not mistaken for a failure) and the per-group back-off. Losing
it on restart costs at most one extra recreation of a group that was already being recreated.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from grok_operator import constants as c
from grok_operator.admission import NOT_PERMITTED, admission_message
from grok_operator.capacity import plan_memory
from grok_operator.kube import ApiError, KubeApi, Observed
from grok_operator.observe import GroupObservation, GroupState, gated_pod_groups, observe_group
from grok_operator.planner import RolloutLimits, next_backoff, plan_groups
from grok_operator.render import Children, Owner, endpoint, render_children, template_hash
from grok_operator.render.common import group_name, leader_selector, render_hash, selector_string
from grok_operator.security_children import SecurityChildren, resolve_secrets
from grok_operator.status_report import (
    ReportInputs,
    infeasible_status,
    invalid_status,
    serving_status,
    status_patch,
)
from grok_operator.validation import ValidSpec, validate

logger = logging.getLogger(__name__)

#: How long the operator remembers pods it deleted itself.
DELETED_POD_MEMORY_SECONDS = 600.0


@dataclass
class GroupMemory:
    recreations: int = 0
    retry_at: float = 0.0
    #: Pods this operator deleted (uid -> monotonic time), so their disappearance is not a failure.
    #: Kept for a while rather than pruned by the next list: watch events can trail the list.
    deleted_uids: dict[str, float] = field(default_factory=dict)
    #: Pods of this group the watch saw deleted by someone else (name by uid), until it is recreated.
    lost: dict[str, str] = field(default_factory=dict)


@dataclass
class DeploymentMemory:
    """In-process state about one GrokDeployment, kept between passes."""

    groups: dict[int, GroupMemory] = field(default_factory=dict)

    def group(self, index: int) -> GroupMemory:
        return self.groups.setdefault(index, GroupMemory())

    def pod_deleted(self, index: int, uid: str, name: str) -> None:
        """The watch saw a pod of group `index` go; a failure unless this operator deleted it."""
        group = self.group(index)
        if uid not in group.deleted_uids:
            group.lost[uid] = name


@dataclass(frozen=True)
class Outcome:
    """What a pass did: writes made, and when the next pass is due at the latest (None: resync)."""

    writes: int
    requeue_after: float | None = None
    phase: str = ""


def _group_index(obj: Mapping[str, Any]) -> int | None:
    raw = (obj.get("metadata", {}).get("labels") or {}).get(c.LABEL_GROUP_INDEX)
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def _observe_groups(
    owner: Owner,
    observed: Observed,
    indices: set[int],
    *,
    hosts: int,
    template: str,
    memory: DeploymentMemory,
    admission: Mapping[str, str],
) -> dict[int, GroupObservation]:
    by_index = {i: s for s in observed.statefulsets.values() if (i := _group_index(s)) is not None}
    horizon = time.monotonic() - DELETED_POD_MEMORY_SECONDS
    groups = {}
    for index in sorted(indices | set(by_index)):
        name = group_name(owner.name, index)
        pods = [p for p in observed.pods if (p["metadata"].get("labels") or {}).get(c.LABEL_GROUP) == name]
        remembered = memory.group(index)
        remembered.deleted_uids = {u: t for u, t in remembered.deleted_uids.items() if t >= horizon}
        groups[index] = observe_group(
            index,
            name,
            by_index.get(index),
            pods,
            hosts=hosts,
            template_hash=template,
            deleted_uids=frozenset(remembered.deleted_uids),
            lost_pods=tuple(sorted(remembered.lost.values())),
            admission=admission,
        )
        if groups[index].state is GroupState.READY:
            remembered.recreations = 0
    return groups


def _is_ours(obj: Mapping[str, Any], owner: Owner) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner.uid for ref in refs)


class Reconciler:
    """Runs passes for GrokDeployments through one `KubeApi`."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.security = SecurityChildren(api)

    def reconcile(
        self, body: Mapping[str, Any], memory: DeploymentMemory, *, now: float, now_iso: str
    ) -> Outcome:
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            return Outcome(writes=0)
        owner = Owner(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            labels=tuple(sorted((meta.get("labels") or {}).items())),
        )
        before = self.api.writes
        live_status: Mapping[str, Any] = body.get("status") or {}
        inputs = ReportInputs(
            generation=int(meta.get("generation", 0)),
            now=now_iso,
            previous_conditions=live_status.get("conditions") or [],
            selector=selector_string(leader_selector(owner.name)),
        )
        observed = self.api.observe(owner.namespace, owner.name)
        admission = self._admission(owner.namespace, observed.pods)
        result = validate(body.get("spec") or {}, name=owner.name)
        reason = c.Reason.INVALID_SPEC
        if isinstance(result, ValidSpec):
            resolved = resolve_secrets(self.api, owner.namespace, result)
            result, reason = (resolved, reason) if isinstance(resolved, ValidSpec) else resolved.astuple()
        if not isinstance(result, ValidSpec):
            groups = _observe_groups(
                owner, observed, set(), hosts=0, template="", memory=memory, admission=admission
            )
            status = invalid_status(inputs, result, groups, reason)
            self._event_on_change(
                body, status.conditions[0].reason, status.conditions[0].message, live_status
            )
            self._write_status(owner, live_status, status)
            return Outcome(writes=self.api.writes - before, phase=status.phase)

        valid = result
        spec = valid.spec
        capacity = plan_memory(
            valid.model,
            quantization=spec.model.quantization,
            mesh=valid.mesh,
            max_batch=spec.serving.max_batch,
            max_seq_len=valid.max_seq_len,
            device_memory_bytes=valid.device_memory_bytes,
        )
        template = template_hash(owner, valid)
        groups = _observe_groups(
            owner,
            observed,
            set(range(spec.replicas)),
            hosts=spec.topology.hosts_per_replica,
            template=template,
            memory=memory,
            admission=admission,
        )
        if not capacity.fits:
            status = infeasible_status(inputs, capacity, groups)
            self._event_on_change(
                body, status.conditions[0].reason, status.conditions[0].message, live_status
            )
            self._write_status(owner, live_status, status)
            return Outcome(writes=self.api.writes - before, phase=status.phase)

        limits = RolloutLimits(
            replicas=spec.replicas,
            max_unavailable=spec.rollout.max_unavailable,
            max_surge=spec.rollout.max_surge,
            recreate_failed=spec.failure_policy.action == "RecreateGroup",
        )
        retry_at = {i: m.retry_at for i, m in memory.groups.items()}
        plan = plan_groups(limits, groups, now=now, retry_at=retry_at)
        for index, remembered in memory.groups.items():
            if index not in plan.keep:
                remembered.lost.clear()  # pods of removed groups go on purpose
        children = render_children(owner, valid, list(plan.keep))
        self.security.sync(owner, valid, plan.keep, now=now)
        self._apply_children(owner, children, observed)

        for index, reason in plan.recreate:
            group = groups[index]
            remembered = memory.group(index)
            remembered.recreations += 1
            remembered.retry_at = now + next_backoff(
                spec.failure_policy.backoff_seconds, remembered.recreations
            )
            self._delete_pods(owner, group, remembered)
            self.api.post_event(
                body,
                reason=c.EventReason.GROUP_RECREATED,
                message=f"recreating all {spec.topology.hosts_per_replica} pods of group {group.name}: {reason}",
                warning=True,
            )
        for index in plan.roll:
            group = groups[index]
            self._delete_pods(owner, group, memory.group(index))
            self.api.post_event(
                body,
                reason=c.EventReason.GROUP_ROLLED,
                message=f"replacing the pods of group {group.name} with pod template {template}",
            )
        # Report the world as this pass leaves it: new groups exist (no pods yet), removed ones are
        # gone, acted-on ones are being replaced. The next pass then observes the same, and writes nothing.
        acted = {i for i, _ in plan.recreate} | set(plan.roll)
        hosts = spec.topology.hosts_per_replica
        reported: dict[int, GroupObservation] = {}
        for i in plan.keep:
            seen = groups.get(i)
            if seen is None or not seen.exists:
                reported[i] = GroupObservation(
                    i, group_name(owner.name, i), GroupState.LOADING, message=f"0/{hosts} hosts ready"
                )
            elif i in acted:
                reported[i] = dataclasses.replace(
                    seen, state=GroupState.RECREATING, message="pods are being replaced"
                )
            else:
                reported[i] = seen
        inputs = dataclasses.replace(inputs, endpoint=endpoint(owner, valid))
        status = serving_status(inputs, replicas=spec.replicas, capacity=capacity, groups=reported, plan=plan)
        self._write_status(owner, live_status, status)
        requeue = None
        if plan.backing_off:
            requeue = max(0.5, min(memory.group(i).retry_at for i in plan.backing_off) - now)
        return Outcome(writes=self.api.writes - before, requeue_after=requeue, phase=status.phase)

    def _admission(self, namespace: str, pods: list[dict[str, Any]]) -> dict[str, str]:
        """Kueue's reason for each pod group still behind its admission gate (one read each)."""
        messages = {}
        for workload in gated_pod_groups(pods):
            try:
                messages[workload] = admission_message(self.api.workload(namespace, workload))
            except ApiError as err:
                if err.status != 403:
                    raise
                messages[workload] = NOT_PERMITTED
        return messages

    # ---- writes --------------------------------------------------------------------------------
    def _apply_if_changed(self, desired: dict[str, Any], live: Mapping[str, Any] | None) -> None:
        if live is None or render_hash(live) != render_hash(desired):
            self.api.apply(desired)

    def _apply_children(self, owner: Owner, children: Children, observed: Observed) -> None:
        wanted: dict[str, set[str]] = {"ConfigMap": set(), "Service": set(), "StatefulSet": set()}
        self._apply_if_changed(
            children.config_map, observed.config_maps.get(children.config_map["metadata"]["name"])
        )
        wanted["ConfigMap"].add(children.config_map["metadata"]["name"])
        self._apply_if_changed(
            children.client_service, observed.services.get(children.client_service["metadata"]["name"])
        )
        wanted["Service"].add(children.client_service["metadata"]["name"])
        for group in children.groups:
            # The headless Service first: the pods' DNS names must resolve as soon as they start.
            svc_name = group.service["metadata"]["name"]
            self._apply_if_changed(group.service, observed.services.get(svc_name))
            wanted["Service"].add(svc_name)
            sts_name = group.statefulset["metadata"]["name"]
            self._apply_if_changed(group.statefulset, observed.statefulsets.get(sts_name))
            wanted["StatefulSet"].add(sts_name)
        for kind, live in (
            ("StatefulSet", observed.statefulsets),
            ("Service", observed.services),
            ("ConfigMap", observed.config_maps),
        ):
            for name, obj in live.items():
                if (
                    name not in wanted[kind]
                    and _is_ours(obj, owner)
                    and not obj["metadata"].get("deletionTimestamp")
                ):
                    self.api.delete(kind, owner.namespace, name, uid=obj["metadata"].get("uid"))

    def _delete_pods(self, owner: Owner, group: GroupObservation, remembered: GroupMemory) -> None:
        remembered.lost.clear()
        for pod, uid in zip(group.live_pods, group.live_pod_uids, strict=True):
            remembered.deleted_uids[uid] = time.monotonic()
            self.api.delete("Pod", owner.namespace, pod, uid=uid)

    def _write_status(self, owner: Owner, live: Mapping[str, Any], status: Any) -> None:
        patch = status_patch(live, status)
        if patch is not None:
            logger.debug("status of %s/%s changes: %s", owner.namespace, owner.name, json.dumps(patch)[:2000])
            self.api.patch_status(owner.namespace, owner.name, patch)

    def _event_on_change(
        self, body: Mapping[str, Any], reason: str, message: str, live: Mapping[str, Any]
    ) -> None:
        """Post a Warning for a refusal once, when the Ready condition's story changes."""
        previous = {str(cond.get("type")): cond for cond in live.get("conditions") or []}.get(
            c.ConditionType.READY, {}
        )
        if previous.get("reason") != reason or previous.get("message") != message:
            self.api.post_event(body, reason=reason, message=message, warning=True)
