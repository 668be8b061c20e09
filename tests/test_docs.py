"""The README documents every option, flag and ini twin alike."""

from __future__ import annotations

from dataclasses import fields

import pytest

from pytest_llmeval.options import OPTIONS, Option
from pytest_llmeval.results.records import Record
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_every_option_and_its_ini_twin_is_in_the_readme(option: Option) -> None:
    assert f"`{option.flag}" in README
    assert f"`{option.ini}`" in README


def test_the_results_format_documents_every_record_field_and_setting() -> None:
    doc = (ROOT / "docs" / "results-format.md").read_text()
    for field in fields(Record):
        assert f"`{field.name}`" in doc, field.name
    for setting in ("models", "threshold", "confidence", "repeat", "repeat_gate",
                    "reference_model", "record", "judge_model"):  # fmt: skip
        assert f"`{setting}`" in doc, setting
