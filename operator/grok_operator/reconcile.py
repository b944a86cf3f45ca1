"""One reconcile pass for one GrokDeployment: fetch, decide (pure), write only what differs.

Data flow:
  live object ─► validate (validation.py) ─► capacity plan (capacity.py)
  KubeApi.observe() ─► observe_groups (observe.py) ─► plan_groups (planner.py)
  render_children (render/) ─► apply children whose render hash differs, delete stale ones,
  delete the pods of groups to recreate or roll ─► status (status_report.py) ─► patch if different.

`DeploymentMemory` keeps what the API cannot tell us cheaply: which pods this operator deleted
itself (so their disappearance is not mistaken for a failure) and the per-group back-off. Losing
it on restart costs at most one extra recreation of a group that was already being recreated.

Threads: the pass runs in a worker thread, and at most one pass per GrokDeployment runs at a time,
so that thread owns the memory's groups. The event loop only queues what the watch saw
(`pod_deleted`, under a lock); the pass takes the queue when it starts. The children come from
the watch-fed cache (child_cache.py) when the caller passes `observed`, else from LISTs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from grok_operator import constants as c
from grok_operator import pass_cache
from grok_operator.admission import NOT_PERMITTED, admission_message
from grok_operator.child_cache import Written
from grok_operator.dependencies import creation_failures, explain, short_of_pods
from grok_operator.drift import drifted, version
from grok_operator.kube import ApiError, KubeApi, Observed
from grok_operator.observe import GroupObservation, GroupState, gated_pod_groups, observe_group
from grok_operator.planner import RolloutLimits, next_backoff, plan_groups
from grok_operator.ratelimit import CreateLimiter
from grok_operator.recreation import leftovers
from grok_operator.refusals import (
    REFUSAL_RETRY_SECONDS,
    ChildRefusedError,
    ObjectGoneError,
    Refusal,
    is_gone,
    is_permanent,
    refusal,
)
from grok_operator.render import Children, Owner, endpoint
from grok_operator.render.common import group_name, leader_selector, render_hash, selector_string
from grok_operator.restart_policy import AFTER_START, restart_rule
from grok_operator.security_children import SecurityChildren, resolve_secrets
from grok_operator.shortages import Shortage, cluster_shortage
from grok_operator.status_report import (
    ReportInputs,
    blocked_status,
    infeasible_status,
    invalid_status,
    serving_status,
    status_patch,
)
from grok_operator.validation import SpecProblem, ValidSpec

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
    #: Container restarts by pod uid when the group first became Ready since it was (re)created;
    #: None until then (restart_policy.py).
    started_restarts: dict[str, int] | None = None
    #: When this operator last deleted the group's pods (recreation or roll), as the API writes
    #: times; pods created before it belong to the replaced incarnation (recreation.py).
    recreated_at: str = ""


@dataclass(frozen=True)
class RememberedRefusal:
    """The apiserver refused a child of spec `generation`; unchanged, it is tried again at `retry_at`."""

    generation: int
    retry_at: float
    refusal: Refusal


@dataclass
class DeploymentMemory:
    """In-process state about one GrokDeployment, kept between passes.

    `groups` belongs to the thread running the pass; other threads only call `pod_deleted`."""

    groups: dict[int, GroupMemory] = field(default_factory=dict)
    refusal: RememberedRefusal | None = None
    #: Each child's version right after this operator's last write (drift.py).
    applied: dict[str, str] = field(default_factory=dict)
    _inbox: list[tuple[int, str, str]] = field(default_factory=list)
    _inbox_lock: threading.Lock = field(default_factory=threading.Lock)

    def group(self, index: int) -> GroupMemory:
        return self.groups.setdefault(index, GroupMemory())

    def pod_deleted(self, index: int, uid: str, name: str) -> None:
        """The watch saw a pod of group `index` go (any thread): queued for the next pass."""
        with self._inbox_lock:
            self._inbox.append((index, uid, name))

    def take_watch_events(self) -> None:
        """Apply the queued deletions (the pass's thread): a failure unless this operator deleted it."""
        with self._inbox_lock:
            events, self._inbox = self._inbox, []
        for index, uid, name in events:
            group = self.group(index)
            if uid not in group.deleted_uids:
                group.lost[uid] = name


@dataclass(frozen=True)
class Outcome:
    """What a pass did: writes made, and when the next pass is due at the latest (None: resync)."""

    writes: int
    requeue_after: float | None = None
    phase: str = ""
    #: The object's resourceVersion after this pass's status write (None: no status written):
    #: the watch event of that write is the operator's own and needs no new pass.
    status_version: str | None = None


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
    restart_policy: str = AFTER_START,
    reported_ready: frozenset[str] = frozenset(),
) -> dict[int, GroupObservation]:
    by_index = {i: s for s in observed.statefulsets.values() if (i := _group_index(s)) is not None}
    horizon = time.monotonic() - DELETED_POD_MEMORY_SECONDS
    groups = {}
    for index in sorted(indices | set(by_index)):
        name = group_name(owner.name, index)
        pods = [p for p in observed.pods if (p["metadata"].get("labels") or {}).get(c.LABEL_GROUP) == name]
        remembered = memory.group(index)
        remembered.deleted_uids = {u: t for u, t in remembered.deleted_uids.items() if t >= horizon}
        rule = restart_rule(restart_policy, remembered.started_restarts, name in reported_ready)
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
            restart_baseline=rule.baseline,
            ignore_restarts=rule.ignore,
        )
        seen = groups[index]
        if seen.state is GroupState.READY:
            remembered.recreations = 0
            remembered.recreated_at = ""
            if remembered.started_restarts is None:
                remembered.started_restarts = dict(
                    zip(seen.live_pod_uids, seen.live_pod_restarts, strict=True)
                )
    return groups


def _reported_ready(status: Mapping[str, Any]) -> frozenset[str]:
    """Groups the last written status showed Ready (restart policy after an operator restart)."""
    return frozenset(
        str(g.get("name")) for g in status.get("groups") or [] if g.get("state") == GroupState.READY
    )


def _headless(service: Mapping[str, Any]) -> bool:
    return (service.get("spec") or {}).get("clusterIP") == "None"


def _is_ours(obj: Mapping[str, Any], owner: Owner) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner.uid for ref in refs)


class _ShortageError(Exception):
    """A child write the cluster refused for lack of room (carries what the status says)."""

    def __init__(self, shortage: Shortage) -> None:
        super().__init__(shortage.message)
        self.shortage = shortage


class Reconciler:
    """Runs passes for GrokDeployments through one `KubeApi`."""

    def __init__(
        self, api: KubeApi, *, limiter: CreateLimiter | None = None, written: Written | None = None
    ) -> None:
        self.api = api
        #: Bounds group creations (ratelimit.py); None: create every new group at once.
        self.limiter = limiter
        #: Where applies and deletes are recorded for the watch-fed cache (None: no cache).
        self.written = written
        self.security = SecurityChildren(api, written)

    def reconcile(
        self,
        body: Mapping[str, Any],
        memory: DeploymentMemory,
        *,
        now: float,
        now_iso: str,
        observed: Observed | None = None,
    ) -> Outcome:
        """One pass; `observed` is the children from the watch-fed cache (None: LIST them)."""
        memory.take_watch_events()
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            return Outcome(writes=0)
        owner = Owner(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            labels=tuple(sorted((meta.get("labels") or {}).items())),
        )
        before = self.api.thread_writes
        live_status: Mapping[str, Any] = body.get("status") or {}
        inputs = ReportInputs(
            generation=int(meta.get("generation", 0)),
            now=now_iso,
            previous_conditions=live_status.get("conditions") or [],
            selector=selector_string(leader_selector(owner.name)),
        )
        if observed is None:
            observed = self.api.observe(owner.namespace, owner.name)
        admission = self._admission(owner.namespace, observed.pods)
        key = pass_cache.spec_key(body.get("spec") or {})
        result: ValidSpec | Sequence[SpecProblem] = pass_cache.validated(key, owner.name)
        reason = c.Reason.INVALID_SPEC
        if isinstance(result, ValidSpec):
            keys_of = functools.partial(self.security.secret_keys, now=now)
            resolved = resolve_secrets(keys_of, owner.namespace, result)
            result, reason = (resolved, reason) if isinstance(resolved, ValidSpec) else resolved.astuple()
        if not isinstance(result, ValidSpec):
            groups = _observe_groups(
                owner, observed, set(), hosts=0, template="", memory=memory, admission=admission
            )
            kept = dataclasses.replace(inputs, endpoint=str(live_status.get("endpoint") or ""))
            status = invalid_status(kept, result, groups, reason=reason)
            self._event_on_change(
                body, status.conditions[0].reason, status.conditions[0].message, live_status
            )
            written_version = self._write_status(owner, live_status, status)
            return Outcome(
                status_version=written_version, writes=self.api.thread_writes - before, phase=status.phase
            )

        valid = result
        spec = valid.spec
        capacity = pass_cache.capacity(key, owner.name)
        template = pass_cache.template(owner, key, valid.tls_client_ca)
        self._delete_leftovers(owner, observed, memory)
        groups = _observe_groups(
            owner,
            observed,
            set(range(spec.replicas)),
            hosts=spec.topology.hosts_per_replica,
            template=template,
            memory=memory,
            admission=admission,
            restart_policy=spec.failure_policy.restart_policy,
            reported_ready=_reported_ready(live_status),
        )
        groups = self._explain_missing_pods(owner, observed, groups, spec.topology.hosts_per_replica, now_iso)
        if not capacity.fits:
            status = infeasible_status(inputs, capacity, groups)
            self._event_on_change(
                body, status.conditions[0].reason, status.conditions[0].message, live_status
            )
            written_version = self._write_status(owner, live_status, status)
            return Outcome(
                status_version=written_version, writes=self.api.thread_writes - before, phase=status.phase
            )

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
        deferred = self._deferred_creations(owner, plan.keep, groups)
        children = pass_cache.children(
            owner, key, tuple(i for i in plan.keep if i not in deferred), valid.tls_client_ca
        )
        self.security.sync(owner, valid, plan.keep, observed, now=now)
        remembered_refusal = memory.refusal
        if (
            remembered_refusal is None
            or remembered_refusal.generation != inputs.generation
            or now >= remembered_refusal.retry_at
        ):
            memory.refusal = None
            try:
                shortage = self._apply_children(body, owner, children, observed, memory)
            except ChildRefusedError as err:
                shortage = None
                memory.refusal = RememberedRefusal(
                    inputs.generation, now + REFUSAL_RETRY_SECONDS, err.refusal
                )
            if shortage is not None:
                status = blocked_status(inputs, shortage.reason, shortage.message, groups)
                self._event_on_change(body, shortage.reason, shortage.message, live_status)
                written_version = self._write_status(owner, live_status, status)
                return Outcome(
                    status_version=written_version,
                    writes=self.api.thread_writes - before,
                    requeue_after=shortage.retry_after,
                    phase=status.phase,
                )
        if memory.refusal is not None:
            return self._report_refusal(body, owner, inputs, live_status, groups, memory.refusal, now, before)

        for index, reason in plan.recreate:
            group = groups[index]
            remembered = memory.group(index)
            remembered.recreations += 1
            remembered.retry_at = now + next_backoff(
                spec.failure_policy.backoff_seconds, remembered.recreations
            )
            remembered.recreated_at = now_iso
            self._delete_pods(owner, group, remembered)
            self.api.post_event(
                body,
                reason=c.EventReason.GROUP_RECREATED,
                message=f"recreating all {spec.topology.hosts_per_replica} pods of group {group.name}: {reason}",
                warning=True,
            )
        for index in plan.roll:
            group = groups[index]
            memory.group(index).recreated_at = now_iso
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
            if i in deferred:
                continue  # not created yet (create rate limit): "scaling to N (now M)" says so
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
        written_version = self._write_status(owner, live_status, status)
        requeue = None
        if plan.backing_off:
            requeue = max(0.5, min(memory.group(i).retry_at for i in plan.backing_off) - now)
        if deferred and self.limiter is not None:
            next_create = max(0.2, self.limiter.wait((owner.namespace, owner.name)))
            requeue = next_create if requeue is None else min(requeue, next_create)
        return Outcome(
            status_version=written_version,
            writes=self.api.thread_writes - before,
            requeue_after=requeue,
            phase=status.phase,
        )

    def _explain_missing_pods(
        self, owner: Owner, observed: Observed, groups: dict[int, GroupObservation], hosts: int, now_iso: str
    ) -> dict[int, GroupObservation]:
        """Groups short of pods get the StatefulSet controller's reason (one Event list, only then)."""
        short = [
            i
            for i, g in groups.items()
            if short_of_pods(g, hosts, observed.statefulsets.get(g.name), now_iso)
        ]
        if not short:
            return groups
        uids = {n: str(s["metadata"].get("uid", "")) for n, s in observed.statefulsets.items()}
        failures = creation_failures(self.api.failed_creates(owner.namespace), uids)
        out = dict(groups)
        for i in short:
            if (failure := failures.get(groups[i].name)) is not None:
                out[i] = explain(groups[i], failure)
        return out

    def _deferred_creations(
        self, owner: Owner, keep: tuple[int, ...], groups: Mapping[int, GroupObservation]
    ) -> set[int]:
        """New groups this pass may not create yet (the create rate limit), the highest first."""
        new = [i for i in keep if i not in groups or not groups[i].exists]
        if self.limiter is None or not new:
            return set()
        allowed = self.limiter.take((owner.namespace, owner.name), len(new))
        return set(new[allowed:])

    def _report_refusal(
        self,
        body: Mapping[str, Any],
        owner: Owner,
        inputs: ReportInputs,
        live_status: Mapping[str, Any],
        groups: Mapping[int, GroupObservation],
        remembered: RememberedRefusal,
        now: float,
        before: int,
    ) -> Outcome:
        """A child the apiserver refused: its message in the status and an Event, no retry until
        the spec changes or the slow retry is due."""
        problem = SpecProblem(remembered.refusal.field, remembered.refusal.describe())
        kept = dataclasses.replace(inputs, endpoint=str(live_status.get("endpoint") or ""))
        status = invalid_status(kept, [problem], groups, reason=c.Reason.REFUSED_BY_API_SERVER)
        self._event_on_change(body, status.conditions[0].reason, status.conditions[0].message, live_status)
        written_version = self._write_status(owner, live_status, status)
        return Outcome(
            status_version=written_version,
            writes=self.api.thread_writes - before,
            requeue_after=max(1.0, remembered.retry_at - now),
            phase=status.phase,
        )

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
    def _apply_if_changed(
        self,
        body: Mapping[str, Any],
        desired: dict[str, Any],
        live: Mapping[str, Any] | None,
        memory: DeploymentMemory,
    ) -> None:
        """Write a child that is missing, renders differently, or was changed by hand (drift)."""
        kind, name = desired["kind"], desired["metadata"]["name"]
        key = f"{kind}/{name}"
        if live is not None and render_hash(live) == render_hash(desired):
            changed = drifted(desired, live)
            if not changed or memory.applied.get(key) == version(kind, live):
                return
            meta = body["metadata"]
            logger.info(
                "%s/%s: %s was changed by hand (%s); putting it back",
                meta["namespace"],
                meta["name"],
                key,
                changed,
            )
            self.api.post_event(
                body,
                reason=c.EventReason.DRIFT_CORRECTED,
                message=f"{kind} {name} was changed by hand ({', '.join(changed[:5])}); "
                "put back to what the spec renders",
            )
        try:
            written = self.api.apply(desired)
        except ApiError as err:
            # A full ClusterIP range is a 500, not a refusal of this spec: check it first.
            shortage = cluster_shortage(err, str(kind), str(name))
            if shortage is not None:
                raise _ShortageError(shortage) from err
            if is_gone(err):
                raise ObjectGoneError(f"{kind} {name}: {err}") from err
            if is_permanent(err):
                raise ChildRefusedError(refusal(err, kind, name)) from err
            raise
        memory.applied[key] = version(kind, written)
        if self.written is not None:
            self.written.applied(written)

    def _apply_children(
        self,
        body: Mapping[str, Any],
        owner: Owner,
        children: Children,
        observed: Observed,
        memory: DeploymentMemory,
    ) -> Shortage | None:
        """Apply what differs and delete what is no longer wanted; a `Shortage` when the cluster
        has no room for a child (the rest waits for the next pass)."""
        try:
            self._apply_wanted(body, owner, children, observed, memory)
        except _ShortageError as short:
            return short.shortage
        return None

    def _apply_wanted(
        self,
        body: Mapping[str, Any],
        owner: Owner,
        children: Children,
        observed: Observed,
        memory: DeploymentMemory,
    ) -> None:
        wanted: dict[str, set[str]] = {"ConfigMap": set(), "Service": set(), "StatefulSet": set()}
        cm_name = children.config_map["metadata"]["name"]
        self._apply_if_changed(body, children.config_map, observed.config_maps.get(cm_name), memory)
        wanted["ConfigMap"].add(cm_name)
        client_name = children.client_service["metadata"]["name"]
        live_client = observed.services.get(client_name)
        if live_client is not None and _headless(live_client) != _headless(children.client_service):
            self._replace_client_service(body, owner, live_client)
            live_client = None
        self._apply_if_changed(body, children.client_service, live_client, memory)
        wanted["Service"].add(client_name)
        for group in children.groups:
            # The headless Service first: the pods' DNS names must resolve as soon as they start.
            if group.service is not None:
                svc_name = group.service["metadata"]["name"]
                self._apply_if_changed(body, group.service, observed.services.get(svc_name), memory)
                wanted["Service"].add(svc_name)
            sts_name = group.statefulset["metadata"]["name"]
            self._apply_if_changed(body, group.statefulset, observed.statefulsets.get(sts_name), memory)
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
                    uid = str(obj["metadata"].get("uid", ""))
                    self.api.delete(kind, owner.namespace, name, uid=uid or None)
                    if self.written is not None:
                        self.written.deleted((owner.namespace, owner.name), kind, uid)

    def _replace_client_service(self, body: Mapping[str, Any], owner: Owner, live: Mapping[str, Any]) -> None:
        """Delete the client Service whose ClusterIP mode differs from the spec's (the apiserver
        adds or removes a ClusterIP only on creation); the caller then creates it anew."""
        name, uid = str(live["metadata"]["name"]), str(live["metadata"].get("uid", ""))
        self.api.delete("Service", owner.namespace, name, uid=uid or None)
        if self.written is not None:
            self.written.deleted((owner.namespace, owner.name), "Service", uid)
        wanted = "headless" if not _headless(live) else "with a ClusterIP"
        self.api.post_event(
            body,
            reason=c.EventReason.SERVICE_REPLACED,
            message=f"Service {name} replaced by one {wanted} (spec.serving.clientService); "
            "clients reconnect to the new Service",
        )

    def _delete_leftovers(self, owner: Owner, observed: Observed, memory: DeploymentMemory) -> None:
        """Pods of a replaced group created before the replacement: part of the same recreation."""
        for index, remembered in memory.groups.items():
            name = group_name(owner.name, index)
            for pod, uid in leftovers(observed.pods, name, remembered.recreated_at, remembered.deleted_uids):
                logger.info(
                    "%s/%s: pod %s predates the recreation of %s; deleting it too",
                    owner.namespace,
                    owner.name,
                    pod,
                    name,
                )
                remembered.deleted_uids[uid] = time.monotonic()
                self.api.delete("Pod", owner.namespace, pod, uid=uid)

    def _delete_pods(self, owner: Owner, group: GroupObservation, remembered: GroupMemory) -> None:
        remembered.lost.clear()
        remembered.started_restarts = None  # the new pods must become Ready again
        for pod, uid in zip(group.live_pods, group.live_pod_uids, strict=True):
            remembered.deleted_uids[uid] = time.monotonic()
            self.api.delete("Pod", owner.namespace, pod, uid=uid)

    def _write_status(self, owner: Owner, live: Mapping[str, Any], status: Any) -> str | None:
        """Patch the status where it differs; the object's resourceVersion after it (None: no write)."""
        patch = status_patch(live, status)
        if patch is None:
            return None
        logger.debug("status of %s/%s changes: %s", owner.namespace, owner.name, json.dumps(patch)[:2000])
        try:
            written = self.api.patch_status(owner.namespace, owner.name, patch)
        except ApiError as err:
            if is_gone(err):
                raise ObjectGoneError(f"{c.KIND} {owner.namespace}/{owner.name}: {err}") from err
            raise
        return str(written.get("metadata", {}).get("resourceVersion") or "") or None

    def _event_on_change(
        self, body: Mapping[str, Any], reason: str, message: str, live: Mapping[str, Any]
    ) -> None:
        """Post a Warning for a shortage once, when the Ready condition's story changes."""
        previous = {str(cond.get("type")): cond for cond in live.get("conditions") or []}.get(
            c.ConditionType.READY, {}
        )
        if previous.get("reason") != reason or previous.get("message") != message:
            self.api.post_event(body, reason=reason, message=message, warning=True)
