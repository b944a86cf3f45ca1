"""The Secrets and NetworkPolicies of a GrokDeployment: read, created and synced each pass.

Data flow, inside one reconcile pass (reconcile.py):
  ValidSpec ─► `resolve_secrets()` GETs the Secrets the spec names (by name: the chart grants
  `get` on Secrets, never `list`), returns problems that name the field and the fix, or the
  ValidSpec with `tls_client_ca` set when the TLS Secret has ca.crt (mutual TLS).
  kept group indices ─► `SecurityChildren.sync()` (at most every RECHECK_SECONDS per object, and
  at once when the wanted policies change):
    - each group's step-key Secret: GET, and when absent POST it once with 32 random bytes (as
      hex). POST never overwrites (409 when it exists, even if another operator won a race), and
      the key is never rewritten afterwards: a new key under a running group would split it. Secrets of
      removed groups stay until the GrokDeployment goes (owner reference; no `delete` grant).
    - each group's NetworkPolicy (render/networkpolicy.py): applied when its render hash differs,
      deleted when the group is gone or spec.networkPolicy.enabled is false.

Secret data is read only for its keys' presence and never logged (kube.py redacts Secret bodies).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from grok_operator import constants as c
from grok_operator.kube import ApiError, KubeApi
from grok_operator.render.common import Obj, Owner, render_hash, stable_hash, with_render_hash
from grok_operator.render.networkpolicy import network_policy
from grok_operator.render.security import (
    TLS_CA_KEY,
    TLS_CERT_KEY,
    TLS_KEY_KEY,
    group_secret,
    group_secret_name,
)
from grok_operator.validation import SpecProblem, ValidSpec
from grok_worker.contract import GROUP_SECRET_KEY

#: Random bytes in a group's step-channel key (stored as twice as many hex digits).
GROUP_KEY_BYTES = 32
#: A group's step key or a GrokDeployment's NetworkPolicies read this recently are not read again.
RECHECK_SECONDS = 30.0


def _keys(secret: Mapping[str, Any]) -> set[str]:
    return {key for key, value in (secret.get("data") or {}).items() if value}


def _tls_problem(api: KubeApi, namespace: str, name: str) -> tuple[SpecProblem | None, bool]:
    """(problem or None, whether the Secret has ca.crt)."""
    field = "spec.serving.tls.secretName"
    secret = api.get("Secret", namespace, name)
    if secret is None:
        fix = (
            f"create it: kubectl create secret tls {name} -n {namespace} --cert=server.crt "
            f"--key=server.key (then add {TLS_CA_KEY} for client certificates), or remove serving.tls"
        )
        return SpecProblem(field, f"Secret {name!r} not found in namespace {namespace}; {fix}"), False
    keys = _keys(secret)
    missing = [key for key in (TLS_CERT_KEY, TLS_KEY_KEY) if key not in keys]
    if missing:
        return SpecProblem(
            field, f"Secret {name!r} has no {' or '.join(missing)}; it must be a kubernetes.io/tls Secret"
        ), False
    return None, TLS_CA_KEY in keys


def _token_problem(api: KubeApi, namespace: str, name: str) -> SpecProblem | None:
    field = "spec.serving.auth.tokenSecretName"
    secret = api.get("Secret", namespace, name)
    example = (
        f"kubectl create secret generic {name} -n {namespace} --from-literal=client-a=$(openssl rand -hex 32)"
    )
    if secret is None:
        return SpecProblem(
            field,
            f"Secret {name!r} not found in namespace {namespace}; create it: {example}, or remove serving.auth",
        )
    if not _keys(secret):
        return SpecProblem(field, f"Secret {name!r} holds no token; add one per key: {example}")
    return None


@dataclass(frozen=True)
class Refused:
    """Why a valid spec cannot be served yet, and the condition reason to report it under."""

    problems: list[SpecProblem]
    reason: str

    def astuple(self) -> tuple[list[SpecProblem], str]:
        return self.problems, self.reason


def resolve_secrets(api: KubeApi, namespace: str, valid: ValidSpec) -> ValidSpec | Refused:
    """The ValidSpec with what its Secrets tell, or the problems (each naming field and fix)."""
    problems: list[SpecProblem] = []  # ports, reserved ones included, are checked up front (preflight.py)
    serving = valid.spec.serving
    client_ca = False
    if serving.tls is not None:
        tls_problem, client_ca = _tls_problem(api, namespace, serving.tls.secret_name)
        problems += [tls_problem] if tls_problem else []
    if serving.auth is not None:
        token_problem = _token_problem(api, namespace, serving.auth.token_secret_name)
        problems += [token_problem] if token_problem else []
    if problems:
        missing = any("not found in namespace" in p.message for p in problems)
        return Refused(problems, c.Reason.SECRET_NOT_FOUND if missing else c.Reason.INVALID_SPEC)
    return replace(valid, tls_client_ca=client_ca)


def _ensure_group_secret(api: KubeApi, owner: Owner, index: int) -> None:
    name = group_secret_name(owner.name, index)
    live = api.get("Secret", owner.namespace, name)
    if live is None:
        api.create(group_secret(owner, index, secrets.token_hex(GROUP_KEY_BYTES)))
        return
    owned = any(ref.get("uid") == owner.uid for ref in live["metadata"].get("ownerReferences") or [])
    raw = (live.get("data") or {}).get(GROUP_SECRET_KEY, "")
    if not owned or len(base64.b64decode(raw).strip()) < 2 * GROUP_KEY_BYTES:
        raise ApiError(
            "GET",
            f"secrets/{name}",
            409,
            f"Secret {owner.namespace}/{name} is not this GrokDeployment's step key (not owned by it, "
            f"or no {2 * GROUP_KEY_BYTES}-digit {GROUP_SECRET_KEY}); delete it and the operator creates a new one",
        )


def _wanted_policies(owner: Owner, valid: ValidSpec, groups: Iterable[int]) -> dict[str, Obj]:
    if not valid.spec.network_policy.enabled:
        return {}
    policies = (with_render_hash(network_policy(owner, valid, i)) for i in groups)
    return {p["metadata"]["name"]: p for p in policies}


def _sync_network_policies(api: KubeApi, owner: Owner, wanted: Mapping[str, Obj]) -> None:
    live = {
        p["metadata"]["name"]: p
        for p in api.list("NetworkPolicy", owner.namespace, f"{c.LABEL_DEPLOYMENT}={owner.name}")
    }
    for name, desired in wanted.items():
        if name not in live or render_hash(live[name]) != render_hash(desired):
            api.apply(desired)
    for name, obj in live.items():
        refs = obj["metadata"].get("ownerReferences") or []
        if name not in wanted and any(ref.get("uid") == owner.uid for ref in refs):
            api.delete("NetworkPolicy", owner.namespace, name, uid=obj["metadata"].get("uid"))


class SecurityChildren:
    """Keeps each group's step key and NetworkPolicy in place, reading them at most every
    `RECHECK_SECONDS` (a burst of pod events makes many passes in a second; each would otherwise
    re-read them all), and at once when the wanted policies differ from the last ones synced."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        #: step-key Secret (owner uid, name) -> when it was last seen in place
        self._keys_checked: dict[tuple[str, str], float] = {}
        #: owner uid -> (fingerprint of the policies last synced, when)
        self._policies_synced: dict[str, tuple[str, float]] = {}

    def sync(self, owner: Owner, valid: ValidSpec, groups: Iterable[int], *, now: float) -> None:
        """Before the groups' StatefulSets are applied: their step keys exist, their policies match."""
        self._keys_checked = {k: t for k, t in self._keys_checked.items() if now - t < RECHECK_SECONDS}
        self._policies_synced = {
            k: v for k, v in self._policies_synced.items() if now - v[1] < RECHECK_SECONDS
        }
        kept = sorted(groups)
        for index in kept:
            key = (owner.uid, group_secret_name(owner.name, index))
            if key not in self._keys_checked:
                _ensure_group_secret(self.api, owner, index)
                self._keys_checked[key] = now
        wanted = _wanted_policies(owner, valid, kept)
        fingerprint = stable_hash(sorted((name, render_hash(p)) for name, p in wanted.items()))
        synced = self._policies_synced.get(owner.uid)
        if synced is None or synced[0] != fingerprint:
            _sync_network_policies(self.api, owner, wanted)
            self._policies_synced[owner.uid] = (fingerprint, now)
