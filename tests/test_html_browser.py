"""The example suite's HTML report in a real browser (Debian's headless Chromium): it
renders with its charts, logs no error, fetches nothing but itself, its filters show
exactly the cases they should, and it prints.

CI installs Chromium (.ci/run) and sets CI, so there a missing browser fails the test;
elsewhere it is skipped, saying why."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pytest_llmeval.results.saved_run import SavedRun
from tests.headless_chromium import Chromium, Page, chromium_path
from tests.test_html import report_example

CHARTS = """Array.from(document.querySelectorAll('figure.chart')).map(f => {
  const box = f.querySelector('svg').getBoundingClientRect();
  return {name: f.dataset.chart, width: box.width, height: box.height,
          marks: f.querySelectorAll('circle, rect, path, line').length};
})"""
SHOWN = """Array.from(document.querySelectorAll('article.case'))
  .filter(a => a.offsetParent !== null)
  .map(a => [a.dataset.suite, a.dataset.model, a.dataset.case, a.dataset.outcome])"""


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SavedRun]:
    """The report of the README's swap comparison, and the results file of the same run."""
    if chromium_path() is None:
        reason = "Chromium is not installed (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    where = tmp_path_factory.mktemp("report")
    done = report_example(where)
    assert done.returncode == 1, done.stdout + done.stderr
    return where / "report.html", SavedRun.load(where / "run.json")


def set_filter(page: Page, **values: str) -> list[list[str]]:
    """Choose in the filters as a person would (an input event each); the cases shown."""
    for name, value in values.items():
        page.evaluate(
            f"(() => {{ const c = document.querySelector('[data-filter={name}]'); "
            f"c.value = {value!r}; c.dispatchEvent(new Event('input')); }})()"
        )
    shown: list[list[str]] = page.evaluate(SHOWN)
    return shown


def test_the_report_renders_with_its_charts_and_no_console_errors(
    example: tuple[Path, SavedRun], tmp_path: Path
) -> None:
    report, saved = example
    with Chromium(width=1366, height=900) as browser:
        page = browser.open(report.as_uri())
        assert page.console_errors == []
        assert page.requests == [report.as_uri()]  # it fetched nothing but itself

        charts = page.evaluate(CHARTS)
        assert [c["name"] for c in charts] == ["accuracy", "latency", "cost"] * 3
        for chart in charts:
            # Drawn, at a readable size, with its marks.
            assert chart["width"] >= 400, chart
            assert chart["height"] >= 80, chart
            assert chart["marks"] >= 6, chart
        # Readable on a laptop screen: nothing runs off the side of the page.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

        records = saved.records
        problems = [r for r in records if r.outcome != "pass"]
        shown = page.evaluate(SHOWN)
        assert len(shown) == len(problems) == 777  # misses and errors, until asked
        assert page.evaluate("document.getElementById('shown').textContent") == (
            f"777 of {len(records)} shown"
        )
        # The model and a field it got wrong: exactly the results file's cases.
        picked = set_filter(page, model="qwen-0.5b-ft", field="star_rating")
        wanted = sorted([r.suite, r.model, r.case, r.outcome] for r in problems
                        if r.model == "qwen-0.5b-ft" and r.fields.get("star_rating") is False)  # fmt: skip
        assert sorted(picked) == wanted
        assert 0 < len(picked) < 777
        # Passes, by text: what a judge said.
        passes = set_filter(page, model="", field="", outcome="pass", text="")
        assert sorted(passes) == sorted([r.suite, r.model, r.case, r.outcome] for r in records
                                        if r.outcome == "pass")  # fmt: skip
        judged = next(r for r in records if r.judge_grades)
        words = " ".join(judged.judge_grades[0]["reasoning"].split()[:4]).lower()
        found = set_filter(page, outcome="", text=words)
        assert [judged.suite, judged.model, judged.case, judged.outcome] in found
        by_key = {(r.suite, r.model, r.case): r for r in records}
        for suite, model, case, _ in found:
            r = by_key[suite, model, case]
            text = " ".join([r.case, r.answer or "", r.reason, *r.diff,
                             *(g["reasoning"] for g in r.judge_grades)]).lower()  # fmt: skip
            assert words in text, (case, words)
        set_filter(page, text="")

        # A miss count in a suite's table opens exactly those misses.
        page.evaluate(
            'document.querySelector(\'a[data-show-suite="product-reviews-judged"]'
            '[data-show-model="qwen-0.5b-ft"][data-show-outcome="miss"]\').click()'
        )
        opened = page.evaluate(SHOWN)
        assert sorted(opened) == sorted(
            [r.suite, r.model, r.case, r.outcome] for r in records
            if (r.suite, r.model, r.outcome)
            == ("product-reviews-judged", "qwen-0.5b-ft", "miss")
        )  # fmt: skip

        # A case opens to show expected beside the answer.
        first = "document.querySelector('article.case:not([hidden])')"
        assert page.evaluate(f"{first}.querySelector('.more').offsetParent === null")
        page.evaluate(f"{first}.querySelector('.more-toggle').click()")
        assert page.evaluate(f"{first}.querySelector('.more').offsetParent !== null")
        assert page.evaluate(f"{first}.querySelectorAll('pre .changed').length") > 0

        width, height = page.screenshot(tmp_path / "report.png")
        assert 1300 <= width <= 1366  # the window, less a scroll bar
        assert height > 3000  # the whole page, not the window

        # On paper: no filters or buttons, every shown case expanded, the filter said.
        page.emulate_media("print")
        assert (
            page.evaluate("getComputedStyle(document.querySelector('.filters')).display") == "none"
        )
        assert page.evaluate(
            "Array.from(document.querySelectorAll('article.case:not([hidden]) .more'))"
            ".every(m => m.offsetParent !== null)"
        )
        assert page.evaluate("document.getElementById('printed-filter').textContent") == (
            f"Cases shown: 57 of {len(records)} (model: qwen-0.5b-ft, suite: "
            "product-reviews-judged, outcome: misses)"
        )
        pdf = page.pdf()
        assert pdf.startswith(b"%PDF")
        assert len(re.findall(rb"/Type\s*/Page\b", pdf)) > 3
        assert page.console_errors == []
