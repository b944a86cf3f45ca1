"""The per-spec memo of a pass (pass_cache.py): equal specs share one result, a changed spec or
owner gets its own, and an invalid spec's problems come back as they would uncached."""

from __future__ import annotations

from typing import Any

from grok_operator import pass_cache
from grok_operator.render import Owner
from grok_operator.validation import ValidSpec, validate

OWNER = Owner(name="chat", namespace="serving", uid="u1")


def spec(**serving: Any) -> dict[str, Any]:
    return {
        "model": {"preset": "tiny", "checkpoint": {"hostPath": {"path": "/m"}}},
        "topology": {"hostsPerReplica": 1, "gpusPerHost": 1, "gpuMemory": "16Gi"},
        "serving": serving,
    }


def test_equal_specs_share_results_and_changes_do_not() -> None:
    a, b = (
        pass_cache.spec_key(spec(maxBatch=4)),
        pass_cache.spec_key(dict(reversed(spec(maxBatch=4).items()))),
    )
    assert a == b
    assert pass_cache.children(OWNER, a, (0,)) is pass_cache.children(OWNER, b, (0,))
    changed = pass_cache.spec_key(spec(maxBatch=2))
    assert pass_cache.template(OWNER, changed) != pass_cache.template(OWNER, a)
    other_owner = Owner(name="chat", namespace="serving", uid="u2")
    mine = pass_cache.children(OWNER, a, (0,)).config_map["metadata"]["ownerReferences"][0]["uid"]
    theirs = pass_cache.children(other_owner, a, (0,)).config_map["metadata"]["ownerReferences"][0]["uid"]
    assert (mine, theirs) == ("u1", "u2")
    assert isinstance(pass_cache.validated(a, "chat"), ValidSpec)
    assert pass_cache.capacity(a, "chat").fits


def test_an_invalid_spec_gives_the_same_problems_as_validate() -> None:
    bad = spec(maxBatch=0)
    assert list(pass_cache.validated(pass_cache.spec_key(bad), "chat")) == validate(bad, name="chat")  # type: ignore[arg-type]
