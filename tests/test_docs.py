"""The README documents every option, flag and ini twin alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmeval.options import OPTIONS, Option

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_every_option_and_its_ini_twin_is_in_the_readme(option: Option) -> None:
    assert f"`{option.flag}" in README
    assert f"`{option.ini}`" in README
