"""The Secrets and NetworkPolicies of a GrokDeployment: read, created and synced each pass.

Data flow, inside one reconcile pass (reconcile.py):
  ValidSpec ─► `resolve_secrets()` reads the Secrets the spec names (`SecurityChildren.secret_keys`:
  a GET by name, since the chart grants `get` on Secrets, never `list`; the names of their keys
  kept RECHECK_SECONDS once found), returns problems that name the field and the fix, or the
  ValidSpec with `tls_client_ca` set when clients must present certificates (mutual TLS: a client
  CA Secret is named, or the TLS Secret has ca.crt and spec.serving.tls.clientCertificates is Auto
  or Required; Required without a CA is a problem, so mutual TLS never turns off because a Secret
  lost a key).
  kept group indices and the watch-fed children ─► `SecurityChildren.sync()`:
    - each group's step-key Secret (groups of more than one host: a one-host group has no step
      channel, and no key), at most every RECHECK_SECONDS per group: a group that has no
      StatefulSet yet POSTs its key (32 random bytes as hex) straight away; an existing group GETs
      it. POST never overwrites (409 when it exists, even if another operator won a race; the key
      is then read and checked), and the key is never rewritten afterwards: a new key under a
      running group would split it. Secrets of removed groups stay until the GrokDeployment goes
      (owner reference; no `delete` grant). Secrets are never listed or watched: the chart grants
      `get` and `create` on them only.
    - each group's NetworkPolicy (render/networkpolicy.py), compared with the watch-fed copy
      (child_cache.py): applied when its render hash differs, deleted when the group is gone or
      spec.networkPolicy.enabled is false.

Secret data is read only for its keys' presence and never logged (kube.py redacts Secret bodies).
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from grok_operator import constants as c
from grok_operator.api.spec import TlsSpec
from grok_operator.child_cache import Written
from grok_operator.kube import ApiError, KubeApi, Observed
from grok_operator.render.common import Obj, Owner, group_name, render_hash, with_render_hash
from grok_operator.render.networkpolicy import network_policy
from grok_operator.render.security import (
    TLS_CA_KEY,
    TLS_CERT_KEY,
    TLS_KEY_KEY,
    group_secret,
    group_secret_name,
    has_step_channel,
)
from grok_operator.validation import SpecProblem, ValidSpec
from grok_worker.contract import GROUP_SECRET_KEY

#: Random bytes in a group's step-channel key (stored as twice as many hex digits).
GROUP_KEY_BYTES = 32
#: A group's step key or a GrokDeployment's NetworkPolicies read this recently are not read again.
RECHECK_SECONDS = 30.0


#: The names of a Secret's non-empty keys, None when there is no such Secret: (namespace, name) -> keys.
KeysOf = Callable[[str, str], frozenset[str] | None]


def _keys(secret: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(key for key, value in (secret.get("data") or {}).items() if value)


def _tls_problem(keys_of: KeysOf, namespace: str, tls: TlsSpec) -> tuple[SpecProblem | None, bool]:
    """(problem or None, whether clients must present certificates)."""
    field, name = "spec.serving.tls.secretName", tls.secret_name
    keys = keys_of(namespace, name)
    if keys is None:
        fix = (
            f"create it: kubectl create secret tls {name} -n {namespace} --cert=server.crt "
            f"--key=server.key (then add {TLS_CA_KEY} for client certificates), or remove serving.tls"
        )
        return SpecProblem(field, f"Secret {name!r} not found in namespace {namespace}; {fix}"), False
    missing = [key for key in (TLS_CERT_KEY, TLS_KEY_KEY) if key not in keys]
    if missing:
        return SpecProblem(
            field, f"Secret {name!r} has no {' or '.join(missing)}; it must be a kubernetes.io/tls Secret"
        ), False
    return _client_auth(keys_of, namespace, tls, has_ca=TLS_CA_KEY in keys)


def _client_auth(
    keys_of: KeysOf, namespace: str, tls: TlsSpec, *, has_ca: bool
) -> tuple[SpecProblem | None, bool]:
    """(problem or None, whether clients must present certificates), per clientCertificates and
    clientCASecretName; `has_ca`: the TLS Secret has ca.crt."""
    if tls.client_ca_secret_name is not None:
        return _client_ca_problem(keys_of, namespace, tls.client_ca_secret_name), True
    if tls.client_certificates == "Required" and not has_ca:
        return SpecProblem(
            "spec.serving.tls.clientCertificates",
            f"Required, but Secret {tls.secret_name!r} has no {TLS_CA_KEY} for client certificates to chain to; "
            f"add the client CA to it as {TLS_CA_KEY} (or name a Secret that holds it in clientCASecretName), "
            "or set clientCertificates to None for server-only TLS",
        ), False
    return None, has_ca and tls.client_certificates != "None"


def _client_ca_problem(keys_of: KeysOf, namespace: str, name: str) -> SpecProblem | None:
    field = "spec.serving.tls.clientCASecretName"
    keys = keys_of(namespace, name)
    if keys is None:
        return SpecProblem(
            field,
            f"Secret {name!r} not found in namespace {namespace}; create it: kubectl create secret generic "
            f"{name} -n {namespace} --from-file={TLS_CA_KEY}=client-ca.crt, or remove clientCASecretName",
        )
    if TLS_CA_KEY not in keys:
        return SpecProblem(
            field,
            f"Secret {name!r} has no {TLS_CA_KEY}; put the CA bundle client certificates chain to under it",
        )
    return None


def _token_problem(keys_of: KeysOf, namespace: str, name: str) -> SpecProblem | None:
    field = "spec.serving.auth.tokenSecretName"
    keys = keys_of(namespace, name)
    example = (
        f"kubectl create secret generic {name} -n {namespace} --from-literal=client-a=$(openssl rand -hex 32)"
    )
    if keys is None:
        return SpecProblem(
            field,
            f"Secret {name!r} not found in namespace {namespace}; create it: {example}, or remove serving.auth",
        )
    if not keys:
        return SpecProblem(field, f"Secret {name!r} holds no token; add one per key: {example}")
    return None


@dataclass(frozen=True)
class Refused:
    """Why a valid spec cannot be served yet, and the condition reason to report it under."""

    problems: list[SpecProblem]
    reason: str

    def astuple(self) -> tuple[list[SpecProblem], str]:
        return self.problems, self.reason


def resolve_secrets(keys_of: KeysOf, namespace: str, valid: ValidSpec) -> ValidSpec | Refused:
    """The ValidSpec with what its Secrets tell, or the problems (each naming field and fix)."""
    problems: list[SpecProblem] = []  # ports, reserved ones included, are checked up front (preflight.py)
    serving = valid.spec.serving
    client_ca = False
    if serving.tls is not None:
        tls_problem, client_ca = _tls_problem(keys_of, namespace, serving.tls)
        problems += [tls_problem] if tls_problem else []
    if serving.auth is not None:
        token_problem = _token_problem(keys_of, namespace, serving.auth.token_secret_name)
        problems += [token_problem] if token_problem else []
    if problems:
        missing = any("not found in namespace" in p.message for p in problems)
        return Refused(problems, c.Reason.SECRET_NOT_FOUND if missing else c.Reason.INVALID_SPEC)
    return replace(valid, tls_client_ca=client_ca)


def _ensure_group_secret(api: KubeApi, owner: Owner, index: int, *, new: bool) -> None:
    """The group's step key exists and is this GrokDeployment's; a `new` group creates it first
    (one request where the key is almost always missing), an existing one reads it first."""
    name = group_secret_name(owner.name, index)
    if new and api.create(group_secret(owner, index, secrets.token_hex(GROUP_KEY_BYTES))):
        return
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


def _sync_network_policies(
    api: KubeApi, owner: Owner, wanted: Mapping[str, Obj], live: Mapping[str, Obj], written: Written | None
) -> None:
    for name, desired in wanted.items():
        if name not in live or render_hash(live[name]) != render_hash(desired):
            applied = api.apply(desired)
            if written is not None:
                written.applied(applied)
    for name, obj in live.items():
        refs = obj["metadata"].get("ownerReferences") or []
        deleting = obj["metadata"].get("deletionTimestamp")
        if name not in wanted and not deleting and any(ref.get("uid") == owner.uid for ref in refs):
            uid = str(obj["metadata"].get("uid", ""))
            api.delete("NetworkPolicy", owner.namespace, name, uid=uid or None)
            if written is not None:
                written.deleted((owner.namespace, owner.name), "NetworkPolicy", uid)


class SecurityChildren:
    """Keeps each group's step key and NetworkPolicy in place. Step keys are read at most every
    `RECHECK_SECONDS` per group (a burst of pod events makes many passes in a second; each would
    otherwise re-read them all); policies come from the watch-fed cache and cost no read."""

    def __init__(self, api: KubeApi, written: Written | None = None) -> None:
        self.api = api
        self.written = written
        #: Reconcile threads share this object (passes of different GrokDeployments): both maps
        #: are read and changed under the lock.
        self._lock = threading.Lock()
        #: step-key Secret (owner uid, name) -> when it was last seen in place
        self._keys_checked: dict[tuple[str, str], float] = {}
        #: a Secret a spec names, found: (namespace, name) -> (its keys' names, when read)
        self._found: dict[tuple[str, str], tuple[frozenset[str], float]] = {}

    def secret_keys(self, namespace: str, name: str, *, now: float) -> frozenset[str] | None:
        """A named Secret's keys (never its values): read again at most every RECHECK_SECONDS
        once found, at every pass while it is missing (so its creation shows at once)."""
        with self._lock:
            self._found = {k: v for k, v in self._found.items() if now - v[1] < RECHECK_SECONDS}
            cached = self._found.get((namespace, name))
        if cached is not None:
            return cached[0]
        secret = self.api.get("Secret", namespace, name)
        if secret is None:
            return None
        keys = _keys(secret)
        with self._lock:
            self._found[(namespace, name)] = (keys, now)
        return keys

    def sync(
        self,
        owner: Owner,
        valid: ValidSpec,
        groups: Iterable[int],
        observed: Observed,
        *,
        now: float,
    ) -> None:
        """Before the groups' StatefulSets are applied: their step keys exist, their policies match."""
        with self._lock:
            self._keys_checked = {k: t for k, t in self._keys_checked.items() if now - t < RECHECK_SECONDS}
            checked = set(self._keys_checked)
        kept = sorted(groups)
        for index in kept if has_step_channel(valid) else ():
            key = (owner.uid, group_secret_name(owner.name, index))
            if key not in checked:
                new = group_name(owner.name, index) not in observed.statefulsets
                _ensure_group_secret(self.api, owner, index, new=new)
                with self._lock:
                    self._keys_checked[key] = now
        wanted = _wanted_policies(owner, valid, kept)
        _sync_network_policies(self.api, owner, wanted, observed.network_policies, self.written)
