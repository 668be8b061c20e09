"""The response cache: what its key covers, where entries live, and writers in parallel."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_llmeval.engine.cache import ResponseCache
from pytest_llmeval.engine.client import CallError, Completion, LLMRequest
from pytest_llmeval.engine.share import RunShare
from pytest_llmeval.models import ModelSpec, Price
from pytest_llmeval.suite.model import Message, ResponseFormat
from tests.conftest import REVIEWS, LLMProject, oracle
from tests.openai_server import OpenAIServer

MODEL = ModelSpec(
    name="local",
    model="gemma",
    base_url="http://127.0.0.1:8080/v1",
    api_key_env="LLMEVAL_CACHE_KEY",
    params={"temperature": 0},
    price=Price(0.001, 0.002),
)
REQUEST = LLMRequest(
    MODEL,
    (Message("system", "Extract."), Message("user", "A kettle, 5 stars.")),
    ResponseFormat(json_mode=True),
    group="reviews",
    name="kettle",
    pinned=True,
)
ANSWER = Completion('{"product": "kettle"}', 1.25, 100, 10, 0.12, note="")


@pytest.mark.parametrize(
    "change",
    [
        {"model": dataclasses.replace(MODEL, model="gemma-2")},
        {"model": dataclasses.replace(MODEL, base_url="http://127.0.0.1:9090/v1")},
        {"model": dataclasses.replace(MODEL, params={"temperature": 0.5})},
        {"messages": (Message("system", "Extract!"), Message("user", "A kettle, 5 stars."))},
        {"response_format": ResponseFormat(json_mode=True, schema={"type": "object"})},
        {"params": {"seed": 1}},
        {"repeat": 1},
    ],
    ids=["model id", "endpoint", "model params", "messages", "response format", "call params",
         "repeat"],
)  # fmt: skip
def test_everything_that_determines_the_answer_changes_the_key(change: dict[str, object]) -> None:
    assert dataclasses.replace(REQUEST, **change).key != REQUEST.key  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"model": dataclasses.replace(MODEL, name="renamed", api_key_env="OTHER_KEY")},
        {"model": dataclasses.replace(MODEL, price=None, timeout=5.0, concurrency=1)},
        {"model": dataclasses.replace(MODEL, base_url="http://user:sk-secret@127.0.0.1:8080/v1/")},
        {"group": "other-suite", "name": "other-case", "where": "elsewhere:1"},
    ],
    ids=["name and key variable", "price, timeout, concurrency", "credentials in the URL",
         "where it is filed"],
)  # fmt: skip
def test_nothing_else_changes_the_key(
    change: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = REQUEST.key
    monkeypatch.setenv("LLMEVAL_CACHE_KEY", "sk-rotated")
    assert dataclasses.replace(REQUEST, **change).key == before  # type: ignore[arg-type]


def test_an_entry_round_trips_priced_now_and_names_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMEVAL_CACHE_KEY", "sk-do-not-store-me")
    cache = ResponseCache(tmp_path / "cache", "cache")
    path = cache.store(REQUEST, ANSWER)
    assert path == tmp_path / "cache" / "reviews" / "kettle.local.json"
    assert "sk-do-not-store-me" not in path.read_text()
    hit = cache.load(REQUEST)
    assert hit.status == "hit"
    # Cost comes from the tokens at today's price: 100 x 0.001/1K + 10 x 0.002/1K.
    assert hit.completion == dataclasses.replace(ANSWER, cost=pytest.approx(0.00012), cached=True,
                                                 attempts=0)  # fmt: skip
    assert cache.load(dataclasses.replace(REQUEST, params={"seed": 3})).status == "changed"
    assert cache.load(dataclasses.replace(REQUEST, name="other")).status == "absent"


def test_names_that_are_not_file_names_stay_distinct(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path, ".")
    odd = dataclasses.replace(
        REQUEST, model=dataclasses.replace(MODEL, name="ft:gpt-3.5-turbo:acme::x"), group="a/b"
    )  # a group with slashes is a folder path (a Python test's module)
    twin = dataclasses.replace(
        odd, model=dataclasses.replace(MODEL, name="ft_gpt-3.5-turbo_acme__x")
    )
    assert cache.path(odd).parent == tmp_path / "a" / "b"
    assert cache.path(odd).name.startswith("kettle.ft_gpt-3.5-turbo_acme__x-")
    assert cache.path(odd) != cache.path(twin)
    unpinned = dataclasses.replace(REQUEST, pinned=False, repeat=2)  # the third asking
    assert cache.path(unpinned).name == f"kettle.local.r3.{unpinned.key[:12]}.json"


WRITER = textwrap.dedent("""
    import sys
    from tests.test_cache import ANSWER, REQUEST
    from pytest_llmeval.engine.cache import ResponseCache
    import dataclasses

    cache = ResponseCache(__import__("pathlib").Path(sys.argv[1]), "cache")
    # A long answer makes each write take long enough for readers and writers to overlap.
    answer = dataclasses.replace(ANSWER, text=sys.argv[2] * 200_000)
    for round in range(40):
        for case in range(5):
            cache.store(dataclasses.replace(REQUEST, name=f"case{case}"), answer)
""")


def test_two_processes_writing_at_once_never_leave_a_torn_entry(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(root), letter],
                         cwd=Path(__file__).parent.parent)
        for letter in "ab"
    ]  # fmt: skip
    cache = ResponseCache(root, "cache")
    reads = 0
    while any(w.poll() is None for w in writers):
        for case in range(5):
            lookup = cache.load(dataclasses.replace(REQUEST, name=f"case{case}"))
            if lookup.status == "absent":
                continue
            assert lookup.status == "hit", lookup.detail
            assert lookup.completion is not None
            assert lookup.completion.text in ("a" * 200_000, "b" * 200_000)
            reads += 1
    assert [w.returncode for w in writers] == [0, 0]
    assert reads > 0
    assert sorted(p.name for p in (root / "reviews").iterdir()) == [
        f"case{i}.local.json" for i in range(5)
    ]  # no temporary files left behind
    for path in (root / "reviews").iterdir():
        json.loads(path.read_text())


def test_one_claim_per_request_and_a_dead_claimant_is_seen(tmp_path: Path) -> None:
    share = RunShare(tmp_path)
    assert share.claim("k1")
    assert not share.claim("k1")
    assert share.claim("k2")
    assert (tmp_path / "k1.claim").read_text() == str(os.getpid())
    assert share.claimant_alive("k1")
    assert share.outcome("k1") is None
    share.publish("k1", ANSWER)
    assert share.outcome("k1") == ANSWER
    share.publish("k2", CallError("HTTP 500 from m (url): boom"))
    assert str(share.outcome("k2")) == "HTTP 500 from m (url): boom"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (tmp_path / "k3.claim").write_text(gone.stdout.strip())
    assert not share.claimant_alive("k3")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "k1.claim", "k1.done", "k2.claim", "k2.done", "k3.claim"
    ]  # fmt: skip


def test_a_borrowing_suite_scores_the_answers_of_the_suite_it_borrows(
    llm_project: LLMProject, pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    # Two suites over the same prompt and cases (`cases_from`): the same questions, asked
    # once a run and recorded once, under the suite whose cases they are.
    llm_project({"m1": oracle}, ini='llmeval_record = "new"')
    pytester.makefile(
        ".llmeval.yaml",
        fielded="suite: reviews-fielded\ncases_from: reviews.llmeval.yaml\n"
        "scoring: {method: fields, fields: {product: normalized}}\n",
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.parseoutcomes() == {"passed": 2 * len(REVIEWS)}
    assert openai_server.calls("m1") == len(REVIEWS)
    cache = pytester.path / "llmeval-cache"
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.json")) == sorted(
        f"reviews/{case}.m1.json" for case in REVIEWS
    )
    # Replayed alone, the borrowing suite finds them there.
    result = pytester.runpytest(
        "fielded.llmeval.yaml", "--llm-record=none", "-p", "no:cacheprovider"
    )
    assert result.parseoutcomes() == {"passed": len(REVIEWS)}
    assert openai_server.calls("m1") == len(REVIEWS)
