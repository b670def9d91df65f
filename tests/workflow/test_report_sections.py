"""The report's sections are named once (``REPORT_SECTIONS`` in ``workflow/rules/common.smk``)
and numbered 1..n, so no rule can open a numbered gap; nothing runs (the built report is
checked in ``test_run.py``)."""
from __future__ import annotations

import ast
import re

from smk import REPO

RULE_FILES = [REPO / "workflow" / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]


def test_sections_are_numbered_without_gaps_in_one_place():
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    sections = ast.literal_eval(re.search(r"^REPORT_SECTIONS = (\{.*?\})", common, re.M | re.S).group(1))
    assert [int(name.split(". ")[0]) for name in sections.values()] == list(range(1, len(sections) + 1))
    for path in RULE_FILES:   # every report() takes its category from REPORT_SECTIONS
        literal = re.search(r"\bcategory\s*=\s*(f?[\"'][^\"']*[\"'])", path.read_text())
        assert literal is None, f"{path.name}: category={literal and literal.group(1)}; use REPORT_SECTIONS[...]"
