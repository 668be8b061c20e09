"""Structural scoring, statistics and prices, against hand-computed values."""

from __future__ import annotations

import re
from pathlib import Path

import genai_prices
import pytest

from pytest_llmeval.models import (
    Price,
    PriceSource,
    decide_price,
    load_model_table,
    resolve_models,
)
from pytest_llmeval.results.records import Record, summarize
from pytest_llmeval.results.stats import percentile, wilson
from pytest_llmeval.scoring.structural import score
from pytest_llmeval.suite.rules import Scoring
from pytest_llmeval.support.problems import ConfigError

EXPECTED = {
    "product": "desk chair",
    "star_rating": 2,
    "specific_likes": [],
    "specific_dislikes": ["uncomfortable", "faulty height adjustment"],
}
LENIENT = Scoring(ignore_order=True, ignore_string_case=True)


def test_an_equal_answer_passes_under_the_suite_options() -> None:
    answer = (
        '{"specific_dislikes": ["Faulty height adjustment", "uncomfortable"], '
        '"star_rating": 2.0, "product": "Desk Chair", "specific_likes": []}'
    )
    verdict = score(EXPECTED, answer, LENIENT)
    assert (verdict.outcome, verdict.score) == ("pass", 1.0)
    assert all(verdict.fields.values())
    strict = score(EXPECTED, answer, Scoring())
    assert strict.outcome == "miss"
    assert strict.fields == {
        "product": False,
        "star_rating": True,  # 2 and 2.0 are the same number
        "specific_likes": True,
        "specific_dislikes": False,
    }


def test_a_wrong_answer_misses_with_a_readable_diff_and_field_share() -> None:
    answer = (
        '{"product": "desk chair", "star_rating": 3, "specific_likes": ["colour"],'
        ' "specific_dislikes": ["uncomfortable"], "price": 100}'
    )
    verdict = score(EXPECTED, answer, LENIENT)
    assert verdict.outcome == "miss"
    assert verdict.score == 0.25  # product only, of four fields
    assert verdict.diff == (
        "price: unexpected field, got 100",
        'specific_dislikes: missing item "faulty height adjustment"',
        'specific_likes: unexpected item "colour"',
        "star_rating: expected 2, got 3",
    )
    assert verdict.reason == "4 differences"


def test_invalid_json_is_a_miss_showing_the_raw_text() -> None:
    verdict = score(EXPECTED, "It's a desk chair, two stars.", LENIENT)
    assert verdict.outcome == "miss"
    assert verdict.score == 0.0
    assert verdict.reason.startswith("invalid JSON")
    assert verdict.diff == ("raw answer: It's a desk chair, two stars.",)


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"a": 1}\n```',
        'Sure!\n```\n{"a": 1}\n```\nAnything else?',
        '  {"a": 1}\n',
    ],
)
def test_json_bare_or_in_a_code_fence_is_accepted(text: str) -> None:
    assert score({"a": 1}, text, Scoring()).outcome == "pass"


def test_numeric_tolerance_and_excluded_paths() -> None:
    options = Scoring(numeric_tolerance=0.05, exclude_paths=("notes", "root['meta']['id']"))
    answer = '{"price": 9.97, "notes": "anything", "meta": {"id": 7, "ok": true}}'
    expected = {"price": 10.0, "notes": "ignored", "meta": {"id": 1, "ok": True}}
    verdict = score(expected, answer, options)
    assert verdict.outcome == "pass"
    assert set(verdict.fields) == {"price", "meta"}  # an excluded field is not scored
    assert score(expected, answer.replace("9.97", "9.9"), options).outcome == "miss"


def test_long_raw_answers_are_folded_to_one_line() -> None:
    text = "word " * 500
    (line,) = score({}, text, Scoring()).diff
    assert len(line) < 200
    assert "\n" not in line


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [(7, 10, 0.3968, 0.8922), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (1, 1, 0.2065, 1.0)],
)
def test_wilson_interval_matches_hand_computed_bounds(
    successes: int, trials: int, low: float, high: float
) -> None:
    assert wilson(successes, trials) == pytest.approx((low, high), abs=1e-4)


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.99) == pytest.approx(3.97)
    assert percentile([5.0], 0.99) == 5.0


def record(case: str, outcome: str, **fields: object) -> Record:
    return Record("s", case, "m", f"s::{case}", "s.yaml", 1, outcome, **fields)  # type: ignore[arg-type]


def test_summary_counts_an_error_as_not_passed_and_unknown_cost_is_not_summed() -> None:
    records = [
        record("a", "pass", score=1.0, latency_s=1.0, input_tokens=10, output_tokens=5, cost=0.5),
        record("b", "miss", score=0.5, latency_s=3.0, input_tokens=10, output_tokens=5, cost=0.25),
        record("c", "error"),
    ]
    (summary,) = summarize(records)
    assert (summary.passes, summary.misses, summary.errors) == (1, 1, 1)
    # The error is shown apart and is a case not passed: 1 of 3.
    assert summary.accuracy == pytest.approx(1 / 3)
    assert summary.field_accuracy == 0.75
    assert summary.latency(0.5) == 2.0
    assert (summary.input_tokens, summary.output_tokens, summary.cost) == (20, 10, 0.75)
    unknown = [*records, record("d", "pass", score=1.0, latency_s=1.0, cost=None)]
    assert summarize(unknown)[0].cost is None


@pytest.mark.parametrize(
    ("model", "price", "matched"),
    [
        ("gpt-4", Price(0.03, 0.06), "gpt-4"),
        ("gpt-4-0613", Price(0.03, 0.06), "gpt-4"),  # a dated snapshot, priced as its model
        ("gpt-4-32k", Price(0.06, 0.12), "gpt-4-32k"),
        ("gpt-4o-mini-2024-07-18", Price(0.00015, 0.0006), "gpt-4o-mini"),
        ("gpt-4-1106-preview", Price(0.01, 0.03), "gpt-4-turbo"),
        ("gpt-9", None, "gpt-9"),  # unknown to genai-prices: unpriced, never guessed
        ("llama-3", None, "llama-3"),
    ],
)
def test_an_openai_model_is_priced_by_genai_prices(
    model: str, price: Price | None, matched: str
) -> None:
    found, source = decide_price(model)
    assert found == (None if price is None else pytest.approx(price))
    assert (source.kind, source.provider, source.model) == (
        "genai-prices" if price else "none",
        "openai",
        matched,
    )
    assert source.version == genai_prices.__version__


@pytest.mark.parametrize(
    ("price_model", "price"),
    [
        # The August 2023 figures genai-prices no longer has (it prices these lower today).
        ("2023:gpt-3.5-turbo", Price(0.0015, 0.002)),
        ("2023:ft:gpt-3.5-turbo:acme::x", Price(0.012, 0.016)),
        ("2023:ft:gpt-3.5-turbo-0613:acme::x", None),  # the table holds no snapshots
        ("2023:gpt-4", None),  # genai-prices has it at the same figures: not kept
    ],
)
def test_the_august_2023_figures_are_asked_for_by_name(
    price_model: str, price: Price | None
) -> None:
    found, source = decide_price("anything", base_url="http://127.0.0.1:1/v1",
                                 price_model=price_model)  # fmt: skip
    assert found == price
    assert source.kind == ("august-2023" if price else "none")


def test_an_own_endpoint_is_unpriced_however_openai_like_the_name() -> None:
    assert decide_price("gpt-4o", base_url="http://127.0.0.1:8080/v1") == (
        None,
        PriceSource("none"),
    )
    # A provider's own API, known to genai-prices by its URL, is priced as that provider's.
    price, source = decide_price("gpt-4o", base_url="https://api.openai.com/v1")
    assert (price, source.provider) == (pytest.approx(Price(0.0025, 0.01)), "openai")


def test_a_price_costs_per_thousand_tokens() -> None:
    assert Price(0.03, 0.06).cost(1000, 500) == pytest.approx(0.06)


def test_model_table_reads_the_public_keys_and_overrides_the_price(tmp_path: Path) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text(
        '[tool.llmeval.models.local-gemma]\nmodel = "gemma-3-270m"\n'
        'base_url = "http://127.0.0.1:8080/v1"\nparams = {temperature = 0, max_tokens = 200}\n'
        "price = {input_per_1k = 0.0, output_per_1k = 0.0}\n"
        "[tool.llmeval.models.gpt-4]\nprice = {input_per_1k = 0.1, output_per_1k = 0.2}\n"
        '[tool.llmeval.models.hosted]\nmodel = "x"\nbase_url = "http://127.0.0.1:1/v1"\n'
        'api_key_env = "HOSTED_KEY"\n'
    )
    table = load_model_table(config)
    gemma = table["local-gemma"]
    assert (gemma.model, gemma.api_key_env, gemma.price) == ("gemma-3-270m", None, Price(0, 0))
    assert gemma.params == {"temperature": 0, "max_tokens": 200}
    assert table["gpt-4"].price == Price(0.1, 0.2)
    assert table["gpt-4"].api_key_env == "OPENAI_API_KEY"
    assert table["hosted"].api_key_env == "HOSTED_KEY"
    bare = resolve_models(["local-gemma", "ft:gpt-3.5-turbo:acme::x"], table)
    assert bare[1].model == "ft:gpt-3.5-turbo:acme::x"
    assert bare[1].price_source is not None
    assert (bare[1].price_source.kind, bare[1].price_source.model) == (
        "genai-prices",
        "ft:gpt-3.5-turbo-",
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[tool.llmeval.models.m]\nbase_ur = 'x'\n", "unknown key 'base_ur' (did you mean 'base_url'?)"),
        ("[tool.llmeval.models.m]\nprice = {input_per_1k = 1}\n", "`price` must be"),
        ("[tool.llmeval.models.m]\nschema_style = 'xml'\n", "`schema_style` must be"),
        ("[tool.llmeval.models.m]\nparams = 3\n", "`params` must be a table"),
        ("[tool.llmeval.models.m\n", "pyproject.toml"),
        ("[tool.llmeval.models.m]\nprovider = 'azur'\n",
         "[tool.llmeval.models.m]: unknown provider 'azur' (did you mean 'azure'?); known: azure, openai"),
        ("[tool.llmeval.models.m]\nprovider = 'azure'\n", 'provider "azure" needs `azure_endpoint`'),
        ("[tool.llmeval.models.m]\nprovider = 'azure'\nazure_endpoint = 'https://r.openai.azure.com'\n",
         'provider "azure" needs `api_version`'),
        ("[tool.llmeval.models.m]\nprovider = 'azure'\nazure_endpoint = 'https://r.openai.azure.com'\n"
         "api_version = 'v'\nbase_url = 'http://x'\n", "takes `azure_endpoint`, not `base_url`"),
        ("[tool.llmeval.models.m]\napi_version = 'v'\n", '`api_version` is for provider = "azure"'),
        ("[tool.llmeval.models.m]\nprice_model = 'gpt-4o'\n", '`price_model` must be "PROVIDER:MODEL"'),
        ("[tool.llmeval.models.m]\nprice_model = 'openai:gpt-9'\n",
         f"`price_model`: genai-prices {genai_prices.__version__} has no price for 'openai:gpt-9'"),
        ("[tool.llmeval.models.m]\nprice_model = '2023:gpt-4'\n",
         "the August 2023 figures are kept for ft:gpt-3.5-turbo, gpt-3.5-turbo only"),
        ("[tool.llmeval.models.m]\nprice_model = 'openai:gpt-4o'\n"
         "price = {input_per_1k = 1, output_per_1k = 1}\n", "give `price` or `price_model`, not both"),
    ],
)  # fmt: skip
def test_model_table_errors_name_the_table_and_the_key(
    tmp_path: Path, toml: str, message: str
) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_model_table(config)


def test_an_unknown_or_repeated_model_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown model 'gemma'"):
        resolve_models(["gemma"], {})
    with pytest.raises(ConfigError, match="listed twice"):
        resolve_models(["gpt-4", "gpt-4"], {})
