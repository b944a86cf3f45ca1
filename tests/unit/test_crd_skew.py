"""The installed CRD against this operator's (crd_skew.py): an older CRD from an earlier build of
this operator, and edits of the current one, each found and named; a matching CRD found silent."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from grok_operator import constants as c
from grok_operator.crd import build_crd
from grok_operator.crd_skew import FIX, CrdCheck, compare

OLD_CRD = Path(__file__).parents[1] / "data" / "crd" / "grokdeployments-11d337d.yaml"


def _serving(crd: dict[str, Any]) -> dict[str, Any]:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    serving: dict[str, Any] = schema["properties"]["spec"]["properties"]["serving"]
    return serving


def _stored(crd: dict[str, Any], generation: int) -> dict[str, Any]:
    """`crd` as the apiserver returns it: with a generation and the defaulted conversion."""
    stored = copy.deepcopy(crd)
    stored["metadata"]["generation"] = generation
    stored["spec"]["conversion"] = {"strategy": "None"}
    return stored


def test_this_operators_crd_matches_itself_as_stored() -> None:
    assert not compare(_stored(build_crd(), 1), build_crd())


def test_the_crd_of_an_earlier_build_lacks_the_fields_added_since() -> None:
    old = yaml.safe_load(OLD_CRD.read_text())
    skew = compare(old, build_crd())
    added = (
        "spec.serving.clientService",
        "spec.serving.tls.clientCASecretName",
        "spec.serving.tls.clientCertificates",
    )
    assert skew.missing == added
    assert skew.unknown == ()
    assert not skew.unserved
    assert ", ".join(added) in skew.describe()


def test_fields_only_the_installed_crd_has_are_named() -> None:
    installed = build_crd()
    _serving(installed)["properties"]["legacyMode"] = {"type": "string"}
    _serving(installed)["properties"]["tls"]["properties"]["ciphers"] = {
        "type": "array",
        "items": {"type": "string"},
    }
    skew = compare(installed, build_crd())
    assert skew.unknown == ("spec.serving.legacyMode", "spec.serving.tls.ciphers")
    assert skew.missing == ()
    assert skew.advice().startswith("It looks newer than this operator")
    assert compare(yaml.safe_load(OLD_CRD.read_text()), build_crd()).advice() == (
        f"Install this operator's CRD: {FIX}"
    )


def test_fields_inside_lists_are_compared() -> None:
    installed = build_crd()
    status = installed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    del status["properties"]["conditions"]["items"]["properties"]["observedGeneration"]
    assert compare(installed, build_crd()).missing == ("status.conditions[].observedGeneration",)


def test_a_crd_that_does_not_serve_this_version_is_named() -> None:
    installed = build_crd()
    installed["spec"]["versions"][0]["served"] = False
    skew = compare(installed, build_crd())
    assert skew.unserved
    assert c.VERSION in skew.describe()
    installed["spec"]["versions"][0]["name"] = "v1alpha0"
    assert compare(installed, build_crd()).unserved


def test_a_validation_or_subresource_change_is_found_and_descriptions_are_not() -> None:
    described = build_crd()
    _serving(described)["description"] = "worded differently"
    assert not compare(described, build_crd())
    stricter = build_crd()
    _serving(stricter)["properties"]["port"]["maximum"] = 1024
    skew = compare(stricter, build_crd())
    assert skew.other
    assert not skew.missing
    assert not skew.unknown
    no_scale = build_crd()
    del no_scale["spec"]["versions"][0]["subresources"]["scale"]
    assert compare(no_scale, build_crd()).other


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines() -> Any:
    logger = logging.getLogger("test-crd-skew")
    handler = _Lines()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield logger, handler.records
    logger.removeHandler(handler)


def test_the_check_warns_once_per_generation_with_the_fix_and_says_when_it_matches(lines: Any) -> None:
    logger, records = lines
    check = CrdCheck()
    old = _stored(yaml.safe_load(OLD_CRD.read_text()), 1)
    check.observe(old, logger)
    check.observe(old, logger)  # the same generation again (a status change, a re-list)
    assert [r.levelno for r in records] == [logging.WARNING]
    message = records[0].getMessage()
    assert "spec.serving.clientService" in message
    assert "generation 1" in message
    assert FIX in message
    check.observe(_stored(build_crd(), 2), logger)
    assert [r.levelno for r in records] == [logging.WARNING, logging.INFO]
    assert "generation 2" in records[1].getMessage()
    assert "matches" in records[1].getMessage()
    check.observe(_stored(build_crd(), 3), logger)
    assert len(records) == 2, "a matching CRD after a matching one is not news"


def test_a_matching_crd_at_start_logs_nothing(lines: Any) -> None:
    logger, records = lines
    CrdCheck().observe(_stored(build_crd(), 1), logger)
    assert records == []
