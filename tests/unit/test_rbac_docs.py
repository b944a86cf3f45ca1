"""docs/operator.md's RBAC table states exactly the chart's rules (_rbac_rules.tpl), every
conditional rule included: (API group, resource, verb) triples compared both ways."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "grok-operator" / "templates" / "_rbac_rules.tpl"
DOC = REPO / "docs" / "operator.md"

Triple = tuple[str, str, str]


def chart_triples() -> set[Triple]:
    """Every rule of the template, with Helm's directives and comments dropped."""
    text = re.sub(r"\{\{/\*.*?\*/\}\}", "", RULES.read_text(), flags=re.S)
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(("{{", "#"))]
    rules = yaml.safe_load("\n".join(lines)) or []
    return {
        (group or "core", resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def doc_triples() -> set[Triple]:
    text = DOC.read_text()
    table = text[text.index("| API group | resource | verbs | when |") :].split("\n\n", 1)[0]
    triples = set()
    for row in table.splitlines()[2:]:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        group, resource, verbs = cells[0], cells[1], cells[2]
        triples |= {(group, resource, verb.strip()) for verb in re.split(r",\s*", verbs)}
    return triples


def test_the_docs_rbac_table_matches_the_charts_rules() -> None:
    chart, doc = chart_triples(), doc_triples()
    assert len(chart) > 10  # the parser found the rules
    assert chart - doc == set(), f"granted by the chart but not in docs/operator.md: {sorted(chart - doc)}"
    assert doc - chart == set(), f"in docs/operator.md but not granted by the chart: {sorted(doc - chart)}"
