"""Pure parts of the operator's fault handling: up-front checks of what the children need
(preflight.py), refusals by the apiserver (refusals.py), drift (drift.py), create limits
(ratelimit.py). The real apiserver runs the same cases in tests/integration/test_operator_faults.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from grok_operator.drift import drifted, version
from grok_operator.kube import ApiError
from grok_operator.preflight import STEP_PORT, parse_quantity
from grok_operator.ratelimit import CreateLimiter, CreateLimits
from grok_operator.refusals import is_gone, is_permanent, refusal
from grok_operator.validation import ValidSpec, validate


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"preset": "tiny", "checkpoint": {"hostPath": {"path": "/m"}}},
        "topology": {"hostsPerReplica": 1, "gpusPerHost": 1, "gpuMemory": "16Gi"},
    }
    base.update(overrides)
    return base


def problems(name: str = "ok", **overrides: Any) -> dict[str, str]:
    result = validate(spec(**overrides), name=name)
    assert not isinstance(result, ValidSpec), "accepted"
    return {p.field: p.message for p in result}


def test_a_valid_spec_passes_every_child_check() -> None:
    assert isinstance(validate(spec(), name="chat-1"), ValidSpec)


@pytest.mark.parametrize("name", ["my.model", "1model", "Model", "a_b"])
def test_names_that_cannot_name_a_service_are_refused_with_a_suggestion(name: str) -> None:
    found = problems(name)
    assert "metadata.name" in found, found
    assert "e.g." in found["metadata.name"]


@pytest.mark.parametrize(
    ("serving", "field", "other"),
    [
        ({"port": 9090}, "spec.serving.metricsPort", "spec.serving.port"),
        ({"port": 8476}, "spec.serving.port", "coordinator"),
        ({"metricsPort": STEP_PORT}, "spec.serving.metricsPort", "step-broadcast"),
        ({"http": {"port": 8081}}, "spec.serving.http.port", "health-probe"),
        ({"http": {"port": 50051}}, "spec.serving.http.port", "spec.serving.port"),
    ],
)
def test_every_worker_port_must_differ(serving: dict[str, Any], field: str, other: str) -> None:
    found = problems(serving=serving)
    assert field in found, found
    assert other in found[field]
    assert "pick another" in found[field]


def test_the_http_port_may_reuse_a_port_when_http_is_off() -> None:
    assert isinstance(validate(spec(serving={"http": {"enabled": False, "port": 9090}}), name="a"), ValidSpec)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"tolerations": [{"key": "a", "operator": "Sometimes"}]}, "spec.tolerations[0].operator"),
        ({"tolerations": [{"operator": "Equal", "value": "x"}]}, "spec.tolerations[0].operator"),
        ({"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]}, "spec.tolerations[0].value"),
        ({"tolerations": [{"key": "a", "effect": "Never"}]}, "spec.tolerations[0].effect"),
        ({"tolerations": [{"key": "a", "tolerationSeconds": 5}]}, "spec.tolerations[0].tolerationSeconds"),
        ({"tolerations": [{"key": "bad key!"}]}, "spec.tolerations[0].key"),
        ({"tolerations": [{"key": "a", "colour": "red"}]}, "spec.tolerations[0]"),
        ({"affinity": {"nodeAfinity": {}}}, "spec.affinity.nodeAfinity"),
        ({"affinity": {"nodeAffinity": []}}, "spec.affinity.nodeAffinity"),
        ({"resources": {"requests": {"cpu": "two"}}}, "spec.resources.requests.cpu"),
        ({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}, "spec.resources.requests.cpu"),
        ({"resources": {"request": {"cpu": "2"}}}, "spec.resources.request"),
        ({"topology": {"gpuResourceName": "kubernetes.io/gpu"}}, "spec.topology.gpuResourceName"),
        ({"topology": {"gpuResourceName": "nvidia.com/g p u"}}, "spec.topology.gpuResourceName"),
        ({"nodeSelector": {"gpu": "a b"}}, "spec.nodeSelector.gpu"),
        ({"serviceAccountName": "Not_A_Name"}, "spec.serviceAccountName"),
        ({"priorityClassName": "high priority"}, "spec.priorityClassName"),
    ],
)
def test_malformed_pod_fields_are_named_before_any_child_is_written(
    overrides: dict[str, Any], field: str
) -> None:
    found = problems(**overrides)
    assert field in found, found


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ({"checkpoint": {"hostPath": {"path": "/m"}, "path": "../../etc"}}, "spec.model.checkpoint.path"),
        ({"checkpoint": {"hostPath": {"path": "/m"}, "path": "/etc"}}, "spec.model.checkpoint.path"),
        (
            {"checkpoint": {"hostPath": {"path": "/m"}}, "tokenizerPath": "/etc/passwd"},
            "spec.model.tokenizerPath",
        ),
        (
            {"checkpoint": {"hostPath": {"path": "/m"}}, "tokenizerPath": "a/../../x"},
            "spec.model.tokenizerPath",
        ),
        ({"checkpoint": {"hostPath": {"path": "/m/../etc"}}}, "spec.model.checkpoint.hostPath.path"),
    ],
)
def test_paths_cannot_leave_the_checkpoint_volume(model: dict[str, Any], field: str) -> None:
    found = problems(model={"preset": "tiny", **model})
    assert field in found, found


def test_quantities_parse_like_the_apiserver() -> None:
    assert parse_quantity("500m") == parse_quantity("0.5")
    assert parse_quantity("1Gi") == 2**30
    assert parse_quantity("1e3") == 1000
    assert parse_quantity(2) == 2
    assert parse_quantity("two") is None
    assert parse_quantity(True) is None


def _error(status: int, document: dict[str, Any] | str) -> ApiError:
    text = document if isinstance(document, str) else json.dumps(document)
    return ApiError("PATCH", "/apis/apps/v1/namespaces/n/statefulsets/x", status, text)


def test_a_refusal_carries_the_servers_message_and_the_spec_field() -> None:
    err = _error(
        422,
        {
            "kind": "Status",
            "message": 'StatefulSet.apps "x-g0" is invalid: spec.template.spec.affinity.nodeAffinity: bad',
            "reason": "Invalid",
            "details": {"causes": [{"field": "spec.template.spec.affinity.nodeAffinity", "message": "bad"}]},
        },
    )
    assert is_permanent(err)
    assert not is_gone(err)
    found = refusal(err, "StatefulSet", "x-g0")
    assert found.spec_field == "spec.affinity"
    assert found.field == "spec.affinity"
    assert "is invalid" in found.describe()
    assert "HTTP 422" in found.describe()


def test_gone_and_passing_failures_are_told_apart() -> None:
    assert is_gone(_error(404, {"message": "namespaces n not found"}))
    assert is_gone(
        _error(403, {"message": "unable to create new content in namespace n because it is being terminated"})
    )
    assert is_permanent(_error(403, {"message": "forbidden: User cannot patch"}))
    assert is_permanent(
        _error(500, "failed to create typed patch object: .spec.ports: duplicate entries for key")
    )
    assert not is_permanent(_error(500, "etcdserver: request timed out"))
    assert not is_permanent(_error(409, "conflict"))
    assert not is_permanent(_error(429, "too many requests"))


def test_drift_is_found_on_rendered_fields_only() -> None:
    desired = {
        "metadata": {"name": "x", "labels": {"a": "1"}},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"image": "i:1", "resources": {"limits": {"cpu": "1"}}}]}},
        },
    }
    live = json.loads(json.dumps(desired))
    live["metadata"]["resourceVersion"] = "5"
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "1000m"
    assert drifted(desired, live) == []
    live["spec"]["replicas"] = 3
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "i:2"
    assert drifted(desired, live) == ["spec.replicas", "spec.template.spec.containers[0].image"]
    assert drifted({"data": {"f": "x"}}, {"data": {}}) == ["data.f"]
    assert drifted({"data": {"f": "x"}}, {}) == ["data"]


def test_a_key_added_to_a_map_the_operator_owns_whole_is_drift() -> None:
    desired = {"metadata": {"labels": {"a": "1"}}, "spec": {"selector": {"app": "g"}}, "data": {"f": "x"}}
    live = {
        "metadata": {"labels": {"a": "1", "added": "by-someone"}},
        "spec": {"selector": {"app": "g", "x": "y"}},
        "data": {"f": "x", "extra": "z"},
    }
    assert drifted(desired, live) == ["spec.selector.x", "data.extra"]


def test_a_statefulsets_version_ignores_status_updates() -> None:
    sts = {"metadata": {"generation": 3, "resourceVersion": "99"}}
    assert version("StatefulSet", sts) == "g3"
    assert version("ConfigMap", sts) == "r99"


def test_group_creations_are_bounded_per_object_and_overall() -> None:
    now = [0.0]
    limiter = CreateLimiter(
        CreateLimits(rate=10, burst=6, per_deployment_rate=2, per_deployment_burst=4), clock=lambda: now[0]
    )
    assert limiter.take(("n", "a"), 100) == 4
    assert limiter.take(("n", "a"), 100) == 0
    assert limiter.wait(("n", "a")) == pytest.approx(0.5)
    assert limiter.take(("n", "b"), 100) == 2  # the shared bucket has 2 left
    now[0] = 1.0
    assert limiter.take(("n", "a"), 100) == 2
    now[0] = 100.0
    assert limiter.take(("n", "a"), 3) == 3


def test_plain_log_lines_name_the_object() -> None:
    import logging

    from grok_operator.cli import PlainFormatter

    record = logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, "reconciled", None, None)
    record.k8s_ref = {"kind": "GrokDeployment", "namespace": "ns", "name": "chat"}
    assert PlainFormatter().format(record).endswith("reconciled [GrokDeployment ns/chat]")


def test_a_missing_secret_is_named_in_the_groups_message() -> None:
    from grok_operator.observe import observe_group

    pod = {
        "metadata": {"name": "x-g0-0", "uid": "u", "labels": {}},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "worker",
                    "restartCount": 0,
                    "state": {
                        "waiting": {
                            "reason": "CreateContainerConfigError",
                            "message": 'secret "tokens" not found',
                        }
                    },
                }
            ],
        },
    }
    group = observe_group(0, "x-g0", {"spec": {"replicas": 1}}, [pod], hosts=1, template_hash="")
    assert 'CreateContainerConfigError: secret "tokens" not found' in group.message


def test_failed_creates_match_the_current_statefulset_after_a_grace_and_read_pod_creation_failed() -> None:
    from grok_operator.dependencies import creation_failures, explain, short_of_pods
    from grok_operator.observe import GroupObservation, GroupState

    events = [
        {
            "involvedObject": {"name": "x-g0", "uid": "old"},
            "lastTimestamp": "2026-01-01T00:00:09Z",
            "message": "old",
        },
        {
            "involvedObject": {"name": "x-g0", "uid": "new"},
            "lastTimestamp": "2026-01-01T00:00:01Z",
            "message": "a",
        },
        {
            "involvedObject": {"name": "x-g0", "uid": "new"},
            "lastTimestamp": "2026-01-01T00:00:05Z",
            "message": "b",
        },
    ]
    assert creation_failures(events, {"x-g0": "new"}) == {"x-g0": "b"}
    loading = GroupObservation(0, "x-g0", GroupState.LOADING)
    sts = {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}}
    assert not short_of_pods(loading, 2, sts, "2026-01-01T00:00:03Z")
    assert short_of_pods(loading, 2, sts, "2026-01-01T00:00:06Z")
    assert not short_of_pods(loading, 0, sts, "2026-01-01T00:00:06Z")
    explained = explain(loading, 'pods "x-g0-0" is forbidden: serviceaccount "missing" not found')
    assert explained.state is GroupState.POD_CREATION_FAILED
    assert explained.message.endswith('serviceaccount "missing" not found')
