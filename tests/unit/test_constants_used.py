"""No dead names: every condition reason, Event reason and phase defined in constants.py is used by
the operator's code, so a reason or phase the operator can never report cannot linger in the API's
vocabulary (or in the docs that list it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from grok_operator import constants

OPERATOR = Path(constants.__file__).parent
VOCABULARIES = (constants.Reason, constants.EventReason, constants.Phase, constants.ConditionType)


def operator_source() -> str:
    """Every operator module but constants.py itself."""
    return "\n".join(
        path.read_text() for path in sorted(OPERATOR.rglob("*.py")) if path.name != "constants.py"
    )


def members(cls: type) -> list[str]:
    return [name for name in vars(cls) if name.isupper()]


@pytest.mark.parametrize("vocabulary", VOCABULARIES, ids=lambda cls: cls.__name__)
def test_every_name_is_referenced_by_the_operator(vocabulary: type) -> None:
    source = operator_source()
    unused = [
        name for name in members(vocabulary) if not re.search(rf"\b{vocabulary.__name__}\.{name}\b", source)
    ]
    assert unused == [], (
        f"{vocabulary.__name__} members that no operator module produces: {unused}; produce them or remove them"
    )


def test_the_check_sees_a_name_that_is_never_used() -> None:
    class Reason:
        NEVER_PRODUCED = "NeverProduced"

    assert not re.search(r"\bReason\.NEVER_PRODUCED\b", operator_source())
    assert members(Reason) == ["NEVER_PRODUCED"]
