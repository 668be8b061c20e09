"""JUnit XML that agrees with the exit status: every item carries its figures as
properties, and a miss is a failure there exactly when its suite and model fail the gate
(decided only once every result is in, so the file pytest wrote is amended afterwards)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from pytest_llmeval.report.view import miss_text
from pytest_llmeval.results.gate import Decision
from pytest_llmeval.results.records import Record


def properties(record: Record) -> list[tuple[str, object]]:
    """What a CI dashboard shows for an item, under names that say whose they are."""
    figures: dict[str, object] = {
        "suite": record.suite,
        "case": record.case,
        "model": record.model,
        "repeat": record.repeat,
        "outcome": record.outcome,
        "score": _rounded(record.score, 4),
        "fields": json.dumps(record.fields, sort_keys=True),
        "latency_s": _rounded(record.latency_s, 3),
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cost": _rounded(record.cost, 6),
        "cached": record.cached,
    }
    return [(f"llmeval_{name}", value) for name, value in figures.items() if value is not None]


# What XML 1.0 cannot hold at all (not even as &#...;), and DEL, which pytest escapes too.
_NOT_XML = re.compile("[^\t\n\r\x20-\x7e\x80-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """Text a JUnit file can hold: each character XML 1.0 forbids (NUL, ESC, BEL, ...)
    shown as pytest's --junitxml shows it, #x1B (so an answer full of them still parses)."""
    return _NOT_XML.sub(lambda m: f"#x{ord(m.group()):02X}", text)


def mark_gated_misses(path: Path, decision: Decision) -> int:
    """Turn the misses of the suites and models that failed the gate into failures;
    how many were."""
    # Keyed as pytest wrote the properties: escaped where XML could not hold a character.
    gated = {(xml_safe(r.suite), xml_safe(r.model), xml_safe(r.case), r.repeat): r
             for s in decision.summaries if decision.failed(s) for r in s.missed()}  # fmt: skip
    if not gated:
        return 0
    tree = ET.parse(path)
    marked = 0
    for suite in tree.getroot().iter("testsuite"):
        in_suite = 0
        for case in suite.iter("testcase"):
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            key = (props.get("llmeval_suite"), props.get("llmeval_model"),
                   props.get("llmeval_case"), int(props.get("llmeval_repeat") or 0))  # fmt: skip
            record = gated.get(key)  # type: ignore[arg-type]
            if record is None or case.find("failure") is not None:
                continue
            message = xml_safe(f"llmeval gate: {record.reason}")
            failure = ET.SubElement(case, "failure", message=message)
            failure.text = xml_safe(miss_text(record))
            in_suite += 1
        suite.set("failures", str(int(suite.get("failures", "0")) + in_suite))
        marked += in_suite
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return marked


def _rounded(value: float | None, digits: int) -> float | None:
    """A figure as a dashboard shows it: 0.0049, not 0.004900000000000001."""
    return None if value is None else round(value, digits)
