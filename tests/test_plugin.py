"""The plugin end to end: pytester runs against the OpenAI-compatible test server."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import REVIEWS, LLMProject, oracle, suite_yaml, write_config
from tests.openai_server import OpenAIServer, Reply, Request


def table_row(output: str, model: str) -> list[str]:
    """The summary table's cells for one model (split on runs of spaces)."""
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == model and len(cells) >= 12:
            return cells
    raise AssertionError(f"no table row for {model} in:\n{output}")


def test_all_right_passes_the_gate(pytester: pytest.Pytester, llm_project: LLMProject) -> None:
    llm_project({"m1": oracle}, ini='llmeval_threshold = "0.9"')
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([
        "*reviews.llmeval.yaml::desk-chair[[]m1[]] PASSED*",
        "*llmeval: reviews (threshold 90%: needs 3 of 3)*",
        "*llmeval gate passed*",
    ])  # fmt: skip
    row = table_row(result.stdout.str(), "m1")
    assert row[1:6] == ["3", "3", "0", "0", "100.0%"]
    assert result.ret == 0


def wrong_rating(request: Request) -> dict[str, object]:
    """Right on every field but star_rating, which is always 1."""
    return {**oracle(request), "star_rating": 1}


def test_gate_fails_below_threshold_naming_suite_model_and_cases(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    llm_project({"good": oracle, "bad": wrong_rating}, ini='llmeval_threshold = "0.5"')
    result = pytester.runpytest()
    # Misses are not test failures: only the gate makes the session fail.
    assert result.parseoutcomes() == {"passed": 3, "missed": 3}
    result.stdout.fnmatch_lines([
        "*llmeval gate FAILED: reviews / bad: accuracy 0.0% is below the threshold 50.0% "
        "by 50.0 points; missed: desk-chair, headphones, kettle",
    ])  # fmt: skip
    assert "reviews / good" not in result.stdout.str()
    assert table_row(result.stdout.str(), "bad")[1:6] == ["3", "0", "3", "0", "0.0%"]
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_command_line_threshold_beats_ini_and_a_suites_own_threshold_beats_both(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    llm_project({"m1": lambda r: wrong_rating(r) if "desk chair" in r.last_user_content
                 else oracle(r)}, ini='llmeval_threshold = "0.9"')  # fmt: skip
    assert pytester.runpytest().ret == pytest.ExitCode.TESTS_FAILED  # 2/3 < 0.9
    assert pytester.runpytest("--llm-threshold=0.6").ret == pytest.ExitCode.OK
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml(threshold=0.5))
    result = pytester.runpytest("--llm-threshold=0.99")
    result.stdout.fnmatch_lines(
        ["*llmeval: reviews (threshold 50%: needs 2 of 3)*", "*llmeval gate passed*"]
    )
    assert result.ret == pytest.ExitCode.OK


def test_no_threshold_reports_accuracy_without_gating(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    llm_project({"m1": wrong_rating})
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*llmeval: no threshold set*"])
    assert result.ret == pytest.ExitCode.OK


def test_miss_and_error_are_told_apart(pytester: pytest.Pytester, llm_project: LLMProject) -> None:
    def answer(request: Request) -> Reply | dict[str, object]:
        text = request.last_user_content
        if "kettle" in text:
            return Reply(status=503, error_message="overloaded")
        if "Headphones" in text:
            return Reply(content="The product is headphones, I'd say 3 stars.")
        return wrong_rating(request)

    llm_project({"m1": answer}, ini='llmeval_max_retries = "0"')
    result = pytester.runpytest("-v")
    assert result.parseoutcomes() == {"missed": 2, "errors": 1}
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*::desk-chair[[]m1[]] MISS*",
        "*::kettle[[]m1[]] ERROR*",
        "*::headphones[[]m1[]] MISS*",
        "reviews.llmeval.yaml:10: case 'kettle', model m1: no answer: HTTP 503 from m1 *overloaded",
        "MISS reviews.llmeval.yaml::desk-chair[[]m1[]]  (reviews.llmeval.yaml:7)",
        "    star_rating: expected 2, got 1",
        "MISS reviews.llmeval.yaml::headphones[[]m1[]]  (reviews.llmeval.yaml:13)",
        "  invalid JSON (Expecting value at line 1 column 1)",
        "    raw answer: The product is headphones, I'd say 3 stars.",
    ])  # fmt: skip
    # The error is neither right nor wrong: accuracy is over the two answers.
    assert table_row(out, "m1")[1:6] == ["3", "0", "2", "1", "0.0%"]
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # errors fail the run


def test_fenced_json_answer_is_accepted(pytester: pytest.Pytester, llm_project: LLMProject) -> None:
    llm_project({"m1": lambda r: f"Here you go:\n```json\n{json.dumps(oracle(r))}\n```"},
                ini='llmeval_threshold = "1.0"')  # fmt: skip
    result = pytester.runpytest()
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.OK


def test_strict_turns_a_miss_into_a_failure_with_the_diff(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    llm_project({"m1": wrong_rating})
    result = pytester.runpytest("--llm-strict", "-k", "kettle")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines([
        "reviews.llmeval.yaml:10: case 'kettle' of suite 'reviews', model m1: MISS (1 difference)",
        "  star_rating: expected 5, got 1",
        "expected:",
        '  {"product": "kettle", "star_rating": 5, *',
        "answer:",
    ])  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_bad_case_file_is_one_located_error_and_the_rest_still_runs(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    llm_project({"m1": oracle}, ini='llmeval_threshold = "0.9"')
    broken = suite_yaml("other").replace("expected:", "expcted:", 1)
    pytester.makefile(".llmeval.yml", other=broken)
    result = pytester.runpytest()
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of other.llmeval.yml::invalid-suite*",
        "other.llmeval.yml:9: case 'desk-chair': unknown key 'expcted' in a case "
        "(did you mean 'expected'?)*",
        "*llmeval: reviews (threshold 90%: needs 3 of 3)*",
    ])  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_node_ids_select_and_last_failed_reruns_the_errors(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    failed_once: list[str] = []

    def headphones_fail_once(request: Request) -> Reply | dict[str, object]:
        if "Headphones" in request.last_user_content and not failed_once:
            failed_once.append(request.last_user_content)
            return Reply(status=500)
        return oracle(request)

    llm_project({"m1": headphones_fail_once, "m2": oracle}, ini='llmeval_max_retries = "0"')
    collected = pytester.runpytest("--collect-only", "-q")
    collected.stdout.fnmatch_lines([
        "reviews.llmeval.yaml::desk-chair[[]m1[]]",
        "reviews.llmeval.yaml::desk-chair[[]m2[]]",
    ])  # fmt: skip
    first = pytester.runpytest()
    first.assert_outcomes(passed=5, errors=1)
    calls = openai_server.calls()
    rerun = pytester.runpytest("--lf", "-v")
    rerun.assert_outcomes(passed=1)
    rerun.stdout.fnmatch_lines(["*headphones[[]m1[]] PASSED*"])
    assert openai_server.calls() == calls + 1
    one = pytester.runpytest("reviews.llmeval.yaml::kettle[m2]")
    one.assert_outcomes(passed=1)
    by_tag = pytester.runpytest("-k", "m2 and not kettle")
    by_tag.assert_outcomes(passed=2, deselected=4)


def keyed_config(pytester: pytest.Pytester, server: OpenAIServer, env: str) -> None:
    pytester.makepyprojecttoml(f"""
[tool.pytest.ini_options]
llmeval_models = "hosted,local"

[tool.llmeval.models.hosted]
model = "hosted-1"
base_url = "{server.url}"
api_key_env = "{env}"

[tool.llmeval.models.local]
base_url = "{server.url}"
""")


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (
            ["-o", "llmeval_swap_margin="],
            "llmeval_swap_margin: could not convert string to float: ''",
        ),
        (["-o", "llmeval_misses_shown=many"], "llmeval_misses_shown: invalid literal for int()"),
    ],
)
def test_an_ini_value_that_is_no_number_is_a_usage_error_naming_the_key(
    llm_project: LLMProject, openai_server: OpenAIServer, given: list[str], said: str
) -> None:
    # pytest converts a float or int ini value itself; what it raises is a usage error here,
    # not an internal error with a traceback.
    llm_project({"m1": oracle})
    result = llm_project.pytester.runpytest(*given)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert said in result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert openai_server.calls() == 0


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_missing_api_key_is_one_clear_error_before_any_call(
    pytester: pytest.Pytester,
    openai_server: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    workers: list[str],
) -> None:
    monkeypatch.delenv("LLMEVAL_TEST_KEY", raising=False)
    openai_server.on_any(oracle)
    keyed_config(pytester, openai_server, "LLMEVAL_TEST_KEY")
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest_subprocess(*workers)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count("no API key for hosted") == 1, err
    assert "set the environment variable LLMEVAL_TEST_KEY" in err
    assert "Traceback" not in err + result.stdout.str()
    assert openai_server.calls() == 0
    if not workers:
        # Deselecting the model that needs the key lets the rest run. (Under xdist the
        # controller cannot see the selection, so every configured model needs its key.)
        rest = pytester.runpytest_subprocess("-k", "local")
        rest.assert_outcomes(passed=3, deselected=3)


def test_the_api_key_is_sent_but_never_shown(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-5ecret-value-that-must-not-leak"
    monkeypatch.setenv("LLMEVAL_TEST_KEY", secret)

    def reject(request: Request) -> Reply:
        # Some endpoints echo the key they refuse; the plugin must not pass it on.
        return Reply(status=401, error_message=f"Incorrect API key provided: {secret}")

    openai_server.on("hosted-1", reject)
    openai_server.on("local", oracle)
    keyed_config(pytester, openai_server, "LLMEVAL_TEST_KEY")
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("-vv", "--llm-strict", "-rA")
    assert result.parseoutcomes() == {"passed": 3, "errors": 3}
    result.stdout.fnmatch_lines([
        "*no answer: HTTP 401 from hosted *Incorrect API key provided: ***"
    ])  # fmt: skip
    assert secret not in result.stdout.str() + result.stderr.str()
    sent = {r.model: r.headers.get("authorization") for r in openai_server.requests}
    assert sent["hosted-1"] == f"Bearer {secret}"
    assert secret not in str(sent["local"])


def test_an_unknown_model_is_one_usage_error(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("--llm-models=m1,gemma-typo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*llmeval: unknown model 'gemma-typo': it is not in [[]tool.llmeval.models[]] "
        "(configured: m1) and is not an OpenAI model name",
    ])  # fmt: skip
    assert openai_server.calls() == 0


def test_request_carries_the_prompt_params_and_schema_in_the_model_s_style(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    schema = {"type": "object", "properties": {"product": {"type": "string"}}}
    llama = 'schema_style = "json_object"\nparams = {max_tokens = 50, top_k = 1}'
    llm_project({"openai-style": oracle, "llama-style": oracle}, extra={"llama-style": llama},
                suite=suite_yaml(response_format=schema))  # fmt: skip
    pytester.runpytest("-k", "kettle").assert_outcomes(passed=2, deselected=4)
    by_model = {r.model: r.body for r in openai_server.requests}
    assert by_model["openai-style"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema},
    }
    assert by_model["openai-style"]["temperature"] == 0
    assert by_model["llama-style"]["response_format"] == {"type": "json_object", "schema": schema}
    assert by_model["llama-style"]["top_k"] == 1
    assert by_model["llama-style"]["max_tokens"] == 50
    system, user = by_model["llama-style"]["messages"]
    assert system["role"] == "system"
    assert user == {"role": "user", "content": REVIEWS["kettle"][0]}


def summary_without_timings(output: str) -> list[str]:
    """The llmeval summary lines, with the latency columns blanked (they vary run to run)."""
    start = output.index("llmeval: ")
    lines = output[start:].splitlines()[1:]
    kept = []
    for line in lines:
        if line.startswith("="):
            break
        kept.append(re.sub(r"\d+\.\d\ds", "<t>", line))
    return kept


def test_xdist_gives_the_same_table_and_gate(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    cases = {f"{k}-{i}": v for i in range(4) for k, v in REVIEWS.items()}
    llm_project({"good": oracle, "bad": lambda r: wrong_rating(r) if "stars" in
                 r.last_user_content.lower() else oracle(r)},
                ini='llmeval_threshold = "0.5"', suite=suite_yaml(cases=cases))  # fmt: skip
    pytester.makefile(".llmeval.yaml", second=suite_yaml("second"))
    # Both call every model: the second run must not replay the first's recordings.
    serial = pytester.runpytest_subprocess("--llm-record=all")
    parallel = pytester.runpytest_subprocess("-n", "2", "--llm-record=all")
    assert "2 workers [30 items]" in parallel.stdout.str()
    assert openai_server.calls() == 60  # each request once per run, under xdist as well
    assert serial.parseoutcomes() == parallel.parseoutcomes() == {"passed": 15, "missed": 15}
    assert serial.ret == parallel.ret == pytest.ExitCode.TESTS_FAILED
    lines = summary_without_timings(serial.stdout.str())
    assert lines == summary_without_timings(parallel.stdout.str())
    assert any(line.startswith("llmeval gate FAILED: reviews / bad") for line in lines)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(body=b'{"choices": [{"mess'), "bad response from m1 *: *"),
        (Reply(body=b"[]"), "bad response from m1 *: no answer text in*"),
        (Reply(body=b'{"choices": [{}]}'), "bad response from m1 *: no answer text in*"),
        (
            Reply(
                body=b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": 5}}]}'
            ),
            "bad response from m1 *: no answer text in*",
        ),
        (Reply(delay=3), "timed out after 0.5s at m1 (http:*)"),
    ],
    ids=["truncated-body", "not-a-completion", "no-message", "content-not-text", "timeout"],
)
def test_a_broken_endpoint_is_an_error_naming_case_and_model(
    pytester: pytest.Pytester, llm_project: LLMProject, reply: Reply, message: str
) -> None:
    llm_project({"m1": reply}, ini='llmeval_max_retries = "0"\nllmeval_timeout = "0.5"')
    result = pytester.runpytest("-k", "kettle")
    result.assert_outcomes(errors=1, deselected=2)
    where = "reviews.llmeval.yaml:10: case 'kettle', model m1"
    result.stdout.fnmatch_lines([f"{where}: no answer: {message}"])
    assert "Traceback" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_python_tests_with_the_llmeval_fixture_count_in_the_table(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"good": oracle, "bad": wrong_rating}, ini='llmeval_threshold = "0.5"',
                suite=None)  # fmt: skip
    pytester.makepyfile(
        test_chain=f"""
        import json

        REVIEW = {REVIEWS["kettle"][0]!r}

        def my_chain(llmeval):  # the user's own code, given a model
            return json.loads(llmeval.complete(REVIEW, json_mode=True))

        def test_extracts_the_kettle(llmeval):
            verdict = llmeval.score(my_chain(llmeval), {REVIEWS["kettle"][1]!r}, suite="chains")
            assert verdict.fields["product"]

        def test_plain_tests_are_untouched():
            assert True
    """
    )
    result = pytester.runpytest("-v")
    assert result.parseoutcomes() == {"passed": 2, "missed": 1}
    result.stdout.fnmatch_lines([
        "test_chain.py::test_extracts_the_kettle[[]good[]] PASSED*",
        "test_chain.py::test_extracts_the_kettle[[]bad[]] MISS*",
        "*llmeval: chains (threshold 50%: needs 1 of 1)*",
        "MISS test_chain.py::test_extracts_the_kettle[[]bad[]]  (test_chain.py:8)",
        "    star_rating: expected 5, got 1",
        "llmeval gate FAILED: chains / bad: accuracy 0.0% *missed: test_extracts_the_kettle",
    ])  # fmt: skip
    good = table_row(result.stdout.str(), "good")
    assert good[1:6] == ["1", "1", "0", "0", "100.0%"]
    # llmeval.complete() was timed, counted and costed.
    assert int(good[-3]) > 0
    assert int(good[-2]) > 0
    assert good[-1].startswith("$0.0")
    assert openai_server.requests[0].body["response_format"] == {"type": "json_object"}
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_suite_with_no_models_is_an_error_saying_how_to_give_them(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["reviews.llmeval.yaml: no models to run suite 'reviews' on: *--llm-models*"]
    )


def test_a_free_text_suite_compares_the_whole_answer(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"m1": lambda r: "  Paris\n" if "France" in r.last_user_content else "Rome"},
                suite=None)  # fmt: skip
    pytester.makefile(
        ".llmeval.yaml",
        capitals="""
suite: capitals
prompt: {user: "Capital of {country}? One word."}
response_format: text
scoring: {ignore_string_case: true}
cases:
  - {id: france, inputs: {country: France}, expected: paris}
  - {id: spain, inputs: {country: Spain}, expected: Madrid}
""",
    )
    result = pytester.runpytest()
    assert result.parseoutcomes() == {"passed": 1, "missed": 1}
    result.stdout.fnmatch_lines(['    (whole answer): expected "Madrid", got "Rome"'])
    assert "response_format" not in openai_server.requests[0].body


def test_an_empty_refused_or_cut_off_answer_is_a_miss_that_says_why(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    def answer(request: Request) -> Reply:
        text = request.last_user_content
        if "kettle" in text:
            return Reply(content=None)
        if "Headphones" in text:
            return Reply(
                body=json.dumps(
                    {
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {
                                    "role": "assistant",
                                    "content": None,
                                    "refusal": "I can't help with that.",
                                },
                            }
                        ]
                    }
                ).encode()
            )
        return Reply(body=json.dumps({"choices": [{"index": 0, "finish_reason": "length", "message": {
            "role": "assistant", "content": '{"product": "desk ch'}}]}).encode())  # fmt: skip

    llm_project({"m1": answer})
    result = pytester.runpytest("--llm-misses-shown=3")
    assert result.parseoutcomes() == {"missed": 3}
    result.stdout.fnmatch_lines([
        "MISS *desk-chair*",
        "  invalid JSON (*); the answer was cut off at the token limit (finish_reason: length)",
        "MISS *headphones*",
        "  empty answer; the model refused: I can't help with that.",
        "MISS *kettle*",
        "  empty answer",
    ])  # fmt: skip


def test_a_suite_name_used_by_two_files_is_an_error(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    llm_project({"m1": oracle}, suite=None)
    pytester.makefile(".llmeval.yaml", a=suite_yaml("same"), b=suite_yaml("same"))
    result = pytester.runpytest()
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["b.llmeval.yaml: suite name 'same' is also used by a.llmeval.yaml; rename one"]
    )


def test_selecting_a_model_keeps_a_broken_file_s_error_in_view(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    llm_project({"m1": oracle})
    pytester.makefile(".llmeval.yaml", broken="suite: broken\ncases: []\n")
    result = pytester.runpytest("-k", "m1")
    result.assert_outcomes(passed=3, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_models_as_a_toml_list_and_listing_tests_without_keys(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nllmeval_models = ["gpt-4o", "gpt-4"]\n')
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    listed = pytester.runpytest("--collect-only", "-q")
    listed.stdout.fnmatch_lines(
        ["reviews.llmeval.yaml::kettle[[]gpt-4o[]]", "reviews.llmeval.yaml::kettle[[]gpt-4[]]"]
    )
    assert listed.ret == pytest.ExitCode.OK
    run = pytester.runpytest()
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*no API key for gpt-4, gpt-4o*"])


@pytest.mark.parametrize("where", ["key-with-newline", "url-userinfo"])
def test_credentials_in_a_key_with_a_newline_or_in_the_url_are_never_shown(
    pytester: pytest.Pytester,
    openai_server: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    secret = "sk-test-trailing-newline-secret"
    monkeypatch.setenv("LLMEVAL_TEST_KEY", secret + "\n")
    url = openai_server.url
    if where == "url-userinfo":
        url = url.replace("http://", "http://user:url-secret@")
        openai_server.on("hosted-1", Reply(status=500, error_message="down"))
    else:  # an endpoint echoing the Authorization header it refuses
        openai_server.on(
            "hosted-1", lambda r: Reply(status=401, error_message=r.headers["authorization"])
        )
    pytester.makepyprojecttoml(f"""
[tool.pytest.ini_options]
llmeval_models = "hosted"
llmeval_max_retries = "0"
[tool.llmeval.models.hosted]
model = "hosted-1"
base_url = "{url}"
api_key_env = "LLMEVAL_TEST_KEY"
""")
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("-k", "kettle")
    result.assert_outcomes(errors=1, deselected=2)
    out = result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(
        ["*no answer: HTTP [45]0[01] from hosted (http://127.0.0.1:*/v1): *"]
    )
    assert secret not in out
    assert "url-secret" not in out
    if where == "key-with-newline":
        assert openai_server.requests[0].headers["authorization"] == f"Bearer {secret}"
