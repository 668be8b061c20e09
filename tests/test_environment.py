"""`${NAME}` in the model table: base_url and string params read from the environment, an
unset variable one located problem, and a value read from the environment (a token in a
header) sent to the endpoint and in no output, file or recording key."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_llmeval.models import _expand_entry, _Expansion, load_model_table
from pytest_llmeval.support.problems import ConfigError
from tests.conftest import REVIEWS, oracle, suite_yaml
from tests.openai_server import OpenAIServer, Reply, Request

TOKEN = "tok-LLMEVAL-0123456789-secret"


def model_table(pytester: pytest.Pytester, entry: str) -> None:
    """pyproject.toml running model m1 as ``entry`` (its TOML lines) configures it."""
    pytester.makepyprojecttoml(
        '[tool.pytest.ini_options]\nllmeval_models = "m1"\n[tool.llmeval.models.m1]\n'
        + textwrap.dedent(entry)
    )
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())


def test_base_url_from_the_environment_reaches_the_endpoint(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_BASE_URL", openai_server.url)
    openai_server.on("m1", oracle)
    model_table(pytester, 'base_url = "${LLM_BASE_URL}"\n')
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert result.parseoutcomes() == {"passed": len(REVIEWS)}
    assert openai_server.calls("m1") == len(REVIEWS)


def test_an_unset_variable_is_a_problem_of_the_model_table_naming_it(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLM_BASE_URL", raising=False)
    monkeypatch.delenv("LLMEVAL_NO_TOKEN", raising=False)
    model_table(pytester, """\
        base_url = "${LLM_BASE_URL}"
        params = {extra_headers = {Authorization = "Bearer ${LLMEVAL_NO_TOKEN}"}}
        timeout = -1
    """)  # fmt: skip
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    # Collected with the table's other problems, each naming the key and the variable.
    result.stderr.fnmatch_lines([
        "*pyproject.toml: [[]tool.llmeval.models.m1[]]: `timeout` must be a positive number*",
        "*pyproject.toml: [[]tool.llmeval.models.m1[]] base_url: ${LLM_BASE_URL} is not set",
        "*pyproject.toml: [[]tool.llmeval.models.m1[]] params.extra_headers.Authorization: "
        "${LLMEVAL_NO_TOKEN} is not set",
    ])  # fmt: skip
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert openai_server.calls() == 0


def test_a_default_stands_in_for_an_unset_variable_and_dollars_stay_as_written(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMEVAL_HOST", raising=False)
    openai_server.on("m1", oracle)
    port = openai_server.port
    model_table(pytester, f"""\
        base_url = "http://${{LLMEVAL_HOST:-127.0.0.1}}:{port}/v1"
        params = {{user = "$5 and $HOME and $${{NOT_A_REFERENCE}}"}}
    """)  # fmt: skip
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    sent = {r.body["user"] for r in openai_server.requests}
    assert sent == {"$5 and $HOME and ${NOT_A_REFERENCE}"}


def echo_token(request: Request) -> object:
    """Right on every review but the kettle's, where it says the header it was sent."""
    answer = oracle(request)
    if answer["product"] == "kettle":
        return {**answer, "product": request.headers.get("authorization", "")}
    return answer


def test_a_token_from_the_environment_is_sent_as_a_header_and_kept_nowhere(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMEVAL_TOKEN", TOKEN)
    openai_server.on("m1", echo_token)
    model_table(pytester, f"""\
        base_url = "{openai_server.url}"
        params = {{temperature = 0, extra_headers = {{Authorization = "Bearer ${{LLMEVAL_TOKEN}}"}}}}
    """)  # fmt: skip
    outputs = ["--llm-save=run.json", "--llm-html=report.html", "--llm-markdown=summary.md",
               "--junitxml=junit.xml", "-vv", "-rA"]  # fmt: skip
    result = pytester.runpytest(*outputs)
    assert result.parseoutcomes()["passed"] == len(REVIEWS) - 1, result.stdout.str()
    headers = {r.headers.get("authorization") for r in openai_server.requests}
    assert headers == {f"Bearer {TOKEN}"}
    # Headers go as headers, not into the body the endpoint reads its parameters from.
    assert all("extra_headers" not in r.body for r in openai_server.requests)
    out = result.stdout.str() + result.stderr.str()
    assert "Bearer ***" in out  # the kettle's miss shows the answer, the token taken out
    assert TOKEN not in out
    files = [p for p in pytester.path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" and "llmeval-cache" in p.parts for p in files)
    assert [p for p in files if TOKEN.encode() in p.read_bytes()] == []
    saved = json.loads((pytester.path / "run.json").read_text())
    assert saved["models"]["m1"]["params"] == {"temperature": 0, "extra_headers": {}}

    # A new token (a rotated secret) keeps the recordings: their key holds `${NAME}`.
    monkeypatch.setenv("LLMEVAL_TOKEN", TOKEN[::-1])
    again = pytester.runpytest("--llm-record=none")
    assert again.parseoutcomes()["passed"] == len(REVIEWS) - 1, again.stdout.str()
    assert len(openai_server.requests) == len(REVIEWS)


def test_an_endpoint_from_openai_base_url_is_named_as_that_url(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-0123")
    openai_server.on("gpt-4o-mini", Reply(status=400, error_message="no such thing"))
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("--llm-models=gpt-4o-mini", "-rA")
    out = result.stdout.str()
    assert f"HTTP 400 from gpt-4o-mini ({openai_server.url}, from OPENAI_BASE_URL)" in out
    assert "(OpenAI)" not in out


def expanded(value: str, environ: dict[str, str]) -> _Expansion:
    return _expand_entry({"params": {"p": value}}, environ)


NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
VALUES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@given(st.text(st.characters(blacklist_characters="{", blacklist_categories=("Cs",))))
def test_text_with_no_reference_is_kept_as_written(text: str) -> None:
    done = expanded(text, {"HOME": "/root"})
    assert (done.params["p"], done.problems, done.secrets) == (text, [], set())


@given(NAMES, VALUES, st.text(max_size=5).filter(lambda s: "$" not in s and "{" not in s))
def test_a_reference_reads_its_variable_and_holds_it_secret(
    name: str, value: str, around: str
) -> None:
    done = expanded(f"{around}${{{name}}}{around}", {name: value})
    assert done.params["p"] == f"{around}{value}{around}"
    assert done.secrets == {value}
    assert done.problems == []


@given(NAMES, VALUES.filter(lambda s: "}" not in s))
def test_a_default_is_used_only_when_the_variable_is_unset_or_empty(
    name: str, default: str
) -> None:
    for environ in ({}, {name: ""}):
        done = expanded(f"${{{name}:-{default}}}", environ)
        assert (done.params["p"], done.problems, done.secrets) == (default, [], set())
    assert expanded(f"${{{name}:-{default}}}", {name: "set"}).params["p"] == "set"


@given(st.text(max_size=20))
def test_any_text_expands_or_is_named_as_a_problem(text: str) -> None:
    done = expanded(text, {})
    assert isinstance(done.params["p"], str)
    assert all(problem.startswith("params.p: ") for problem in done.problems)
    assert bool(done.problems) == ("${" in text.replace("$${", ""))


def test_a_secret_in_a_base_url_is_what_its_display_leaves_out(tmp_path: Path) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text('[tool.llmeval.models.m1]\nbase_url = "${LLMEVAL_URL}"\n')
    url = "https://user:hunter2-password@gateway.example/v1?key=q-0123456789"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LLMEVAL_URL", url)
        spec = load_model_table(config)["m1"]
    assert spec.base_url == url
    assert set(spec.from_env) == {"user", "hunter2-password", "key=q-0123456789"}
    assert "hunter2" not in repr(spec)
    with pytest.raises(ConfigError, match=r"base_url: \$\{LLMEVAL_URL\} is not set"):
        load_model_table(config)
