"""Azure OpenAI through the SDK's own Azure client, and where each model's price comes from:
genai-prices, the model's table, the August 2023 figures, or nowhere."""

from __future__ import annotations

import json
import tempfile
import textwrap
import tomllib
from pathlib import Path

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_llmeval.engine.client import LLMRequest
from pytest_llmeval.models import ModelSpec, load_model_table
from pytest_llmeval.report.view import price_lines
from pytest_llmeval.suite.model import Message, ResponseFormat
from pytest_llmeval.support.problems import ConfigError
from tests.conftest import REVIEWS_SUITE, llmeval, oracle
from tests.openai_server import OpenAIServer, Reply, Request

VERSION = genai_prices.__version__
AZURE_KEY = "azure-secret-0123456789abcdef"
API_VERSION = "2024-10-21"


def configure(pytester: pytest.Pytester, models: dict[str, str], ini: str = "") -> None:
    """pyproject.toml with each model's table as given, and the review suite."""
    tables = "\n".join(
        f"[tool.llmeval.models.{name}]\n{textwrap.dedent(body)}" for name, body in models.items()
    )
    pytester.makepyprojecttoml(
        f'[tool.pytest.ini_options]\nllmeval_models = "{",".join(models)}"\n{ini}\n{tables}'
    )
    pytester.makefile(".llmeval.yaml", reviews=REVIEWS_SUITE)


def azure_table(server: OpenAIServer, deployment: str, extra: str = "") -> str:
    return (
        f'provider = "azure"\nmodel = "{deployment}"\n'
        f'azure_endpoint = "{server.azure_endpoint}"\napi_version = "{API_VERSION}"\n{extra}'
    )


@pytest.fixture
def azure_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return AZURE_KEY


def test_an_azure_deployment_is_asked_at_azures_url_with_its_api_key_header(
    pytester: pytest.Pytester, openai_server: OpenAIServer, azure_key: str
) -> None:
    openai_server.on("gpt-4o", oracle)
    configure(pytester, {"az": azure_table(openai_server, "gpt-4o")})
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    chats = openai_server.requests
    assert len(chats) == 3
    for seen in chats:
        assert seen.path == "/openai/deployments/gpt-4o/chat/completions"
        assert seen.query == f"api-version={API_VERSION}"
        assert seen.headers["api-key"] == azure_key
        assert "authorization" not in seen.headers  # the key goes as Azure takes it only
    result.stdout.fnmatch_lines(
        [f"llmeval price of az: genai-prices {VERSION} (azure gpt-4o): "
         "$0.0025 in, $0.01 out per 1K tokens"]
    )  # fmt: skip
    # The recording names the deployment's endpoint as it is, and holds no key.
    recorded = next((pytester.path / "llmeval-cache").rglob("*.json")).read_text()
    assert json.loads(recorded)["endpoint"].endswith(
        f"127.0.0.1:{openai_server.port}/openai/deployments/gpt-4o"
    )
    assert azure_key not in recorded


def test_an_azure_key_echoed_by_the_endpoint_is_redacted(
    pytester: pytest.Pytester, openai_server: OpenAIServer, azure_key: str
) -> None:
    def echo(request: Request) -> Reply:
        return Reply(status=401, error_message=f"key {request.headers['api-key']} refused")

    openai_server.on("gpt-4o", echo)
    configure(pytester, {"az": azure_table(openai_server, "gpt-4o")})
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=3)
    output = result.stdout.str()
    assert azure_key not in output
    endpoint = f"http://127.0.0.1:{openai_server.port}/openai/deployments/gpt-4o"
    assert f"HTTP 401 from az ({endpoint}): key *** refused" in output


def test_a_missing_azure_key_names_its_variable(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    configure(pytester, {"az": azure_table(openai_server, "gpt-4o")})
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert "AZURE_OPENAI_API_KEY" in result.stdout.str() + result.stderr.str()
    assert openai_server.calls() == 0


def test_an_unknown_provider_stops_the_run_with_the_one_meant(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    configure(pytester, {"az": azure_table(openai_server, "gpt-4o").replace("azure", "azur", 1)})
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stderr.fnmatch_lines(
        ["*pyproject.toml: [[]tool.llmeval.models.az[]]: unknown provider 'azur' "
         "(did you mean 'azure'?); known: azure, openai*"]
    )  # fmt: skip
    assert openai_server.calls() == 0


def _request(model: ModelSpec) -> LLMRequest:
    return LLMRequest(model, (Message("user", "hi"),), ResponseFormat())


def test_a_recording_of_an_azure_deployment_is_keyed_by_endpoint_deployment_and_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    azure = ModelSpec("az", "gpt-4o", provider="azure", api_key_env="AZURE_OPENAI_API_KEY",
                      azure_endpoint="https://r.openai.azure.com", api_version=API_VERSION)  # fmt: skip
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "one-key-0123456789")
    key = _request(azure).key
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "another-key-0123456789")
    assert _request(azure).key == key  # no key in the identity
    others = [
        ModelSpec("az", "gpt-4o", provider="azure", azure_endpoint="https://r.openai.azure.com",
                  api_version="2025-01-01-preview"),
        ModelSpec("az", "gpt-4o-2", provider="azure", azure_endpoint="https://r.openai.azure.com",
                  api_version=API_VERSION),
        ModelSpec("az", "gpt-4o", provider="azure", azure_endpoint="https://s.openai.azure.com",
                  api_version=API_VERSION),
        # OpenAI's protocol at the very URL: another source.
        ModelSpec("az", "gpt-4o", base_url="https://r.openai.azure.com/openai/deployments/gpt-4o"),
    ]  # fmt: skip
    assert len({key, *(_request(other).key for other in others)}) == 5


def test_each_model_says_where_its_price_came_from_in_the_summary_and_the_results_file(
    pytester: pytest.Pytester, openai_server: OpenAIServer, azure_key: str
) -> None:
    for deployment in ("gpt-4o", "gpt-4o-mini", "my-deployment", "local-llama"):
        openai_server.on(deployment, oracle)
    local = f'base_url = "{openai_server.url}"\n'
    configure(
        pytester,
        {
            # An OpenAI model at the test server, priced as OpenAI's because the table says so.
            "mini": f'model = "gpt-4o-mini"\n{local}price_model = "openai:gpt-4o-mini"\n',
            # The same name at an endpoint of one's own, with nothing said: no price.
            "lookalike": f'model = "gpt-4o-mini"\n{local}',
            "az": azure_table(openai_server, "gpt-4o"),
            "az-own": azure_table(openai_server, "my-deployment"),
            "overridden": azure_table(
                openai_server, "gpt-4o", "price = {input_per_1k = 0.5, output_per_1k = 1.0}"
            ),
            "local": f'model = "local-llama"\n{local}',
            "seed": f'model = "local-llama"\n{local}price_model = "2023:ft:gpt-3.5-turbo"\n',
        },
        ini='llmeval_save = "results.json"',
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    lines = [
        f"llmeval price of mini: genai-prices {VERSION} (openai gpt-4o-mini): "
        "$0.00015 in, $0.0006 out per 1K tokens",
        "llmeval price of lookalike: none (local model, tokens only)",
        f"llmeval price of az: genai-prices {VERSION} (azure gpt-4o): "
        "$0.0025 in, $0.01 out per 1K tokens",
        f"llmeval price of az-own: none (genai-prices {VERSION} does not know azure "
        "my-deployment; tokens only)",
        "llmeval price of overridden: pyproject.toml: $0.5 in, $1 out per 1K tokens",
        "llmeval price of local: none (local model, tokens only)",
        "llmeval price of seed: OpenAI list price of August 2023 (ft:gpt-3.5-turbo): "
        "$0.012 in, $0.016 out per 1K tokens",
    ]
    result.stdout.fnmatch_lines(lines, consecutive=True)
    saved = json.loads((pytester.path / "results.json").read_text())
    costs: dict[str, list[float | None]] = {}
    for record in saved["records"]:
        costs.setdefault(record["model"], []).append(record["cost"])
        tokens_in, tokens_out = record["input_tokens"], record["output_tokens"]
        if record["model"] == "overridden":  # the table's price, not genai-prices' $0.0025
            assert record["cost"] == pytest.approx((tokens_in * 0.5 + tokens_out * 1.0) / 1000)
    assert costs["local"] == costs["az-own"] == costs["lookalike"] == [None] * 3
    assert None not in costs["mini"] + costs["az"] + costs["seed"]
    models = saved["models"]
    assert models["mini"]["price_source"] == {
        "kind": "genai-prices", "version": VERSION, "provider": "openai", "model": "gpt-4o-mini"
    }  # fmt: skip
    assert models["az"]["provider"] == "azure"
    assert models["az"]["api_version"] == API_VERSION
    assert models["local"]["price_source"]["kind"] == "none"
    # `llmeval report` words the same sources from the results file alone.
    report = llmeval("report", "results.json", "--markdown", "summary.md", cwd=pytester.path)
    assert report.returncode == 0, report.stderr
    markdown = (pytester.path / "summary.md").read_text()
    for line in lines:
        assert f"- {line.removeprefix('llmeval ')}" in markdown
    html = llmeval("report", "results.json", "--html", "page.html", cwd=pytester.path)
    assert html.returncode == 0, html.stderr
    assert (
        "pyproject.toml: $0.5 in, $1 out per 1K tokens" in (pytester.path / "page.html").read_text()
    )


def test_a_results_file_without_price_sources_still_reports() -> None:
    old = {"m": {"model": "m", "price": {"input_per_1k": 0.001, "output_per_1k": 0.002}}}
    assert price_lines(old, ["m"]) == [
        "price of m: source not recorded: $0.001 in, $0.002 out per 1K tokens"
    ]
    edited = {"m": {"price_source": "genai-prices", "price": {"input_per_1k": "free"}}}
    assert price_lines(edited, ["m", "gone"]) == ["price of m: source not recorded"]


# TOML values of every kind a hand-written table may hold where a string is wanted.
toml_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["azure", "openai", "2023:gpt-3.5-turbo", "openai:gpt-4o", "a:b:c", ":x"]),
    st.integers(),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["provider", "azure_endpoint", "api_version", "price_model", "base_url"]),
        toml_values,
    )
)
def test_any_provider_or_price_model_is_read_or_refused_with_its_table_named(
    entry: dict[str, object],
) -> None:
    text = "[tool.llmeval.models.m]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in entry.items())
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "pyproject.toml"
        config.write_text(text, encoding="utf-8")
        refused: list[str] = []
        try:
            spec = load_model_table(config)["m"]
        except ConfigError as exc:
            refused = exc.lines
    if refused:
        assert all("pyproject.toml" in line for line in refused)
        if _readable(text):  # a problem of the table, not of the file
            assert all("[tool.llmeval.models.m]" in line for line in refused)
        return
    assert spec.provider in ("openai", "azure")
    assert spec.price_source is not None
    assert (spec.price is None) == (spec.price_source.kind == "none")


def _readable(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def _toml(value: object) -> str:
    """A TOML value (a JSON string is a TOML basic string but for a few characters: those
    make the file unreadable, which is refused as a whole, as tested above)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    return json.dumps(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(["price", "price_source", "model"]), json_values))
def test_any_models_entry_of_a_results_file_is_worded_without_an_error(
    described: dict[str, object],
) -> None:
    [line] = price_lines({"m": described}, ["m"])
    assert line.startswith("price of m: ")
