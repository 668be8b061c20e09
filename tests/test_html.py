"""The HTML report: well formed, every model and every miss in it, its figures the
results file's, nothing fetched from anywhere, and what a model says cannot inject into it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pytest_llmeval.results.records import summarize
from pytest_llmeval.results.saved_run import SavedRun
from tests.conftest import kettle_wrong, llmeval, oracle, run_example, suite_yaml, write_config
from tests.openai_server import OpenAIServer, Reply, Request

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}


@dataclass
class Case:
    attrs: dict[str, str]
    text: list[str] = field(default_factory=list)


@dataclass
class Figure:
    name: str
    text: list[str] = field(default_factory=list)
    marks: dict[str, int] = field(default_factory=dict)  # svg element → how many


class Page(HTMLParser):
    """The parts of the report the tests read, and a check that every element closes."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.cases: list[Case] = []
        self.figures: list[Figure] = []
        self.tables: list[list[list[str]]] = []
        self._case_depth: int | None = None
        self._figure_depth: int | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()
        assert not self.open, f"never closed: {self.open}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        self.tags.append((tag, found))
        if tag in VOID:
            return
        self.open.append(tag)
        if tag == "article":
            self.cases.append(Case(found))
            self._case_depth = len(self.open)
        if tag == "figure":
            self.figures.append(Figure(found["data-chart"]))
            self._figure_depth = len(self.open)
        if self._figure_depth is not None:
            marks = self.figures[-1].marks
            marks[tag] = marks.get(tag, 0) + 1
        if tag == "table":
            self.tables.append([])
        if tag == "tr":
            self.tables[-1].append([])
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.open[-1:] == [tag], f"</{tag}> closes {self.open[-1:]}"
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        if self._case_depth == len(self.open):
            self._case_depth = None
        if self._figure_depth == len(self.open):
            self._figure_depth = None
        self.open.pop()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._case_depth is not None:
            self.cases[-1].text.append(data)
        if self._figure_depth is not None:
            self.figures[-1].text.append(data)


def assert_self_contained(page: Page) -> None:
    """Nothing the browser would fetch: no address in any attribute, no external script,
    style sheet, image or frame."""
    for tag, attrs in page.tags:
        assert tag not in ("link", "img", "iframe", "object", "embed", "base"), tag
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)


def report_example(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The README's main command (the case study), its page and its results file in
    ``tmp_path``."""
    return run_example(
        f"--llm-html={tmp_path / 'report.html'}", f"--llm-save={tmp_path / 'run.json'}"
    )


def test_the_example_suites_report_holds_every_model_and_every_miss(tmp_path: Path) -> None:
    result = report_example(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr  # the gate fails, as always
    assert f"llmeval report: {tmp_path / 'report.html'}" in result.stdout
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    assert_self_contained(page)
    # Nor anywhere else: no CSS url(), no address even as text (this run had no errors,
    # whose messages may name the model's endpoint).
    assert "://" not in text
    assert "url(" not in text
    saved = SavedRun.load(tmp_path / "run.json")
    summaries = summarize(saved.records, saved.settings["models"])

    # Each suite's table: a row per model with the results file's figures.
    rows = {}
    for table in page.tables:
        if table[0][:2] == ["model", "cases"]:
            for cells in table[1:]:
                rows.setdefault(cells[0], []).append(cells)
    for summary in summaries:
        cells = next(c for c in rows[summary.model] if c[1] == str(len(summary.records))
                     and c[6] == f"{summary.interval[0]:.1%} to {summary.interval[1]:.1%}")  # type: ignore[index]  # fmt: skip
        assert (cells[2], cells[3], cells[4]) == (
            str(summary.passes), str(summary.misses), str(summary.errors))  # fmt: skip
        assert cells[5] == f"{summary.accuracy:.1%}"
        assert cells[9] == f"{summary.latency(0.99):.2f}s"
    assert sorted(rows) == ["qwen-0.5b", "qwen-0.5b-ft", "qwen-1.5b"]

    # Three charts per suite, every model in each; the accuracy chart writes the interval
    # it draws, and the latency chart has a dot for every answer.
    assert [f.name for f in page.figures] == ["accuracy", "latency", "cost"] * 3
    suites = ("product-reviews", "product-reviews-facts", "product-reviews-judged")
    for suite, figures in zip(suites, (page.figures[:3], page.figures[3:6], page.figures[6:]),
                              strict=True):  # fmt: skip
        shown = [s for s in summaries if s.suite == suite]
        for figure in figures:
            words = " ".join(figure.text)
            assert all(s.model in words for s in shown), (figure.name, words)
        accuracy, latency, cost = figures
        for s in shown:
            low, high = s.interval or (0, 0)
            assert f"{s.accuracy:.1%} ({low:.1%} to {high:.1%})" in accuracy.text
        assert latency.marks["circle"] == sum(len(s.records) for s in shown)
        assert cost.marks["circle"] == len(shown)
        assert "threshold 90%" in accuracy.text

    # Every answer is a case in the list; every miss's diff and judge's reasoning is there.
    assert len(page.cases) == len(saved.records) == 3 * 3 * 142
    by_key = {
        (c.attrs["data-suite"], c.attrs["data-model"], c.attrs["data-case"]): c for c in page.cases
    }
    misses = [r for r in saved.records if r.outcome == "miss"]
    assert len(misses) == 777  # the summary's own count (README: 501 passed, 777 missed)
    for record in saved.records:
        case = by_key[record.suite, record.model, record.case]
        assert case.attrs["data-outcome"] == record.outcome
        words = "".join(case.text)
        assert record.location in words
        for line in record.diff:
            assert line in words, (record.case, line)
        for grade in record.judge_grades:
            assert grade["reasoning"].strip() in words
        # Passes are there to read, hidden until the filter asks for them.
        assert ("hidden" in case.attrs) == (record.outcome == "pass")
    assert any(r.judge_grades and r.outcome == "miss" for r in saved.records)

    # The verdict against the reference model, and the gate's decision, in the same words.
    assert "qwen-0.5b-ft: WORSE than qwen-1.5b by 9.9 points on 142 cases (p = 0.018;" in text
    assert (
        "FAILED: product-reviews-facts / qwen-1.5b: accuracy 69.7% is below the threshold" in text
    )

    # The same page again from the results file alone.
    again = llmeval("report", str(tmp_path / "run.json"), "--html", str(tmp_path / "again.html"))
    assert again.returncode == 1, again.stderr  # as `llmeval gate` would exit
    assert (tmp_path / "again.html").read_bytes() == (tmp_path / "report.html").read_bytes()


def test_what_a_model_says_is_shown_and_cannot_inject_markup(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    hostile = '<script>document.title="pwned"</script><img src="http://x/y.png"> not JSON'

    def m2(request: Request) -> object:
        answer = oracle(request)
        if answer["product"] == "kettle":
            return hostile
        return Reply(status=500, error_message="the server fell over")

    openai_server.on("m1", oracle)
    openai_server.on("m2", m2)
    write_config(pytester, openai_server, ["m1", "m2"], ini="llmeval_threshold = 0.9")
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("--llm-html=out/report.html", "--llm-max-retries=0")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = (pytester.path / "out" / "report.html").read_text()
    page = Page(text)
    assert_self_contained(page)
    # The page's own script is the only one, and the answer's image is text, not an image.
    assert [tag for tag, _ in page.tags].count("script") == 1
    assert not any(tag == "img" for tag, _ in page.tags)
    kettle = next(
        c for c in page.cases if c.attrs["data-model"] == "m2" and c.attrs["data-case"] == "kettle"
    )
    assert kettle.attrs["data-outcome"] == "miss"
    assert hostile in "".join(kettle.text)  # shown as the model said it
    error = next(c for c in page.cases if c.attrs["data-outcome"] == "error")
    assert error.attrs["data-model"] == "m2"
    assert "the server fell over" in "".join(error.text)
    assert [c.attrs["data-model"] for c in page.cases if "hidden" in c.attrs] == ["m1"] * 3
    # The miss and error counts of m2's row open its cases.
    links = [a for tag, a in page.tags if tag == "a" and "data-show-model" in a]
    assert {(a["data-show-model"], a["data-show-outcome"]) for a in links} == {
        ("m2", "miss"), ("m2", "error")}  # fmt: skip


def test_the_report_under_xdist_has_every_workers_results(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", oracle)
    openai_server.on("m2", oracle)
    write_config(pytester, openai_server, ["m1", "m2"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("-n", "2", "--llm-html=report.html")
    assert result.ret == pytest.ExitCode.OK
    page = Page((pytester.path / "report.html").read_text())
    found = sorted((c.attrs["data-model"], c.attrs["data-case"]) for c in page.cases)
    assert found == [(m, case) for m in ("m1", "m2")
                     for case in ("desk-chair", "headphones", "kettle")]  # fmt: skip


def test_an_unwritable_report_is_one_warning_and_changes_nothing(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", oracle)
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    (pytester.path / "taken").write_text("a file, not a directory")
    result = pytester.runpytest("--llm-html=taken/report.html")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["llmeval: WARNING: HTML report not written: *taken*"])
    result.assert_outcomes(passed=3)


def test_llmeval_report_says_what_is_wrong_with_its_arguments(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    nothing = llmeval("report", str(tmp_path / "bad.json"))
    assert nothing.returncode == 2
    assert "give --html PATH, --markdown PATH or both" in nothing.stderr
    bad = llmeval("report", str(tmp_path / "bad.json"), "--html", str(tmp_path / "r.html"))
    assert bad.returncode == 2
    assert f"{tmp_path / 'bad.json'}:1: not JSON" in bad.stderr
    assert not (tmp_path / "r.html").exists()


def test_the_report_shows_repeats_and_the_changes_since_a_baseline(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", oracle)
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    assert pytester.runpytest("--llm-save=before.json").ret == pytest.ExitCode.OK

    openai_server.on("m1", kettle_wrong)
    result = pytester.runpytest("--llm-baseline=before.json", "--llm-repeat=2",
                                "--llm-record=all", "--llm-html=report.html")  # fmt: skip
    assert result.ret == pytest.ExitCode.OK  # no threshold, no regression limit
    page = Page((pytester.path / "report.html").read_text())
    headers = [table[0] for table in page.tables]
    assert ["model", "answers", "accuracy", "pass^2", "flaky cases"] in headers
    repeats = next(t for t in page.tables if "pass^2" in t[0])
    assert repeats[1] == ["m1", "6", "66.7%", "66.7% (2 of 3)", "none"]
    baseline = next(t for t in page.tables if t[0][0] == "suite / model")
    assert baseline[1][:4] == ["reviews / m1", "100.0%", "66.7%", "-33.3 pts"]
    assert ("a", {"href": "#baseline"}) in page.tags
    assert len(page.cases) == 6  # each asking is its own case in the list
