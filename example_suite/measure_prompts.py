"""Measure prompt variants of the example suite against a local OpenAI-compatible server.

    python example_suite/local_model.py serve &
    python example_suite/local_model.py wait
    python example_suite/measure_prompts.py [--variants 6-shot,zero-shot] [--dump answers.json]

Every variant is derived from product_reviews.llmeval.yaml (its system text, its worked
examples, its schema) and run over all its cases, one request at a time (llama.cpp's server
serialises requests anyway), greedy, max_tokens 200. Prints a Markdown table: valid JSON,
each field right, whole answer right, latency. "Whole answer" is DeepDiff with ignore_order
and ignore_string_case, as the suite's scoring; the field columns compare case-insensitively,
order-insensitively, and numbers by value.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from deepdiff import DeepDiff
from openai import OpenAI

SUITE = Path(__file__).with_name("product_reviews.llmeval.yaml")
NUMBER_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}
LIST_FIELDS = ("specific_likes", "specific_dislikes")


@dataclass(frozen=True)
class Variant:
    name: str
    shots: int  # worked examples (user/assistant pairs) taken from the suite, in order
    system: bool = True
    schema: str = "suite"  # "suite" | "number" (star_rating: any number or null) | "none"
    repeat_penalty: float | None = None  # None: the server's default (llama.cpp: 1.1)


VARIANTS = [
    Variant("zero-shot", shots=0),
    Variant("3-shot", shots=3),
    Variant("6-shot", shots=6),
    Variant("6-shot without system text", shots=6, system=False),
    Variant("6-shot in JSON mode without schema", shots=6, schema="none"),
    Variant("6-shot with star_rating any number", shots=6, schema="number"),
    Variant("6-shot with repeat_penalty 1.0", shots=6, repeat_penalty=1.0),
]


@dataclass
class Tally:
    n: int = 0
    valid: int = 0
    product: int = 0
    star: int = 0
    likes: int = 0
    dislikes: int = 0
    whole: int = 0
    latencies: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)


def render(template: str, inputs: dict[str, str]) -> str:
    """Replace {name} by the case input `name`; other braces are left alone."""
    return re.sub(
        r"\{([A-Za-z_][A-Za-z0-9_]*)\}",
        lambda m: inputs.get(m.group(1), m.group(0)),
        template,
    )


def build_messages(suite: dict[str, Any], variant: Variant, inputs: dict[str, str]) -> list[Any]:
    system, *examples, template = suite["messages"]
    if system["role"] != "system" or template["role"] != "user":
        raise ValueError("expected: a system message, worked examples, then the user template")
    messages = [system] if variant.system else []
    messages += examples[: 2 * variant.shots]
    messages.append({"role": "user", "content": render(template["content"], inputs)})
    return messages


def response_format(suite: dict[str, Any], variant: Variant) -> Any:
    """llama.cpp's form; its "schema" key is not in the openai SDK's types, hence Any."""
    if variant.schema == "none":
        return {"type": "json_object"}
    schema = json.loads(json.dumps(suite["response_format"]))
    if variant.schema == "number":
        schema["properties"]["star_rating"] = NUMBER_OR_NULL
    # llama.cpp's server takes this form, not OpenAI's {"type": "json_schema", ...}.
    return {"type": "json_object", "schema": schema}


def same_text(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    return bool(a == b)


def same_list(expected: list[str], got: Any) -> bool:
    if not isinstance(got, list) or not all(isinstance(x, str) for x in got):
        return False
    return sorted(x.strip().lower() for x in expected) == sorted(x.strip().lower() for x in got)


def same_number(expected: Any, got: Any) -> bool:
    if expected is None or got is None:
        return expected is got
    return isinstance(got, int | float) and not isinstance(got, bool) and got == expected


def score(tally: Tally, expected: dict[str, Any], text: str) -> None:
    try:
        got = json.loads(text)
    except json.JSONDecodeError:
        return
    if not isinstance(got, dict):
        return
    tally.valid += 1
    tally.product += same_text(expected["product"], got.get("product"))
    tally.star += same_number(expected["star_rating"], got.get("star_rating"))
    tally.likes += same_list(expected["specific_likes"], got.get("specific_likes"))
    tally.dislikes += same_list(expected["specific_dislikes"], got.get("specific_dislikes"))
    tally.whole += not DeepDiff(expected, got, ignore_order=True, ignore_string_case=True)


def run(
    client: OpenAI, model: str, suite: dict[str, Any], variant: Variant, dump: list[Any]
) -> Tally:
    tally = Tally()
    for case in suite["cases"]:
        start = time.perf_counter()
        completion = client.chat.completions.create(
            model=model,
            messages=build_messages(suite, variant, case["inputs"]),
            response_format=response_format(suite, variant),
            temperature=0,
            max_tokens=200,
            # Not an OpenAI parameter: the SDK only passes it on in extra_body.
            extra_body=None
            if variant.repeat_penalty is None
            else {"repeat_penalty": variant.repeat_penalty},
        )
        tally.latencies.append(time.perf_counter() - start)
        if completion.usage is not None:
            tally.prompt_tokens.append(completion.usage.prompt_tokens)
        text = completion.choices[0].message.content or ""
        tally.n += 1
        score(tally, case["expected"], text)
        dump.append(
            {
                "variant": variant.name,
                "id": case["id"],
                "answer": text,
                "seconds": round(tally.latencies[-1], 2),
                "usage": completion.usage.model_dump() if completion.usage else None,
            }
        )
        print(f"  {variant.name} {case['id']}: {text}", file=sys.stderr)
    return tally


def row(name: str, t: Tally) -> str:
    def cell(k: int) -> str:
        return f"{k}/{t.n} ({100 * k / t.n:.0f}%)"

    counts = (t.valid, t.product, t.star, t.likes, t.dislikes, t.whole)
    latency = f"{statistics.median(t.latencies):.1f} / {max(t.latencies):.1f}"
    return f"| {name} | " + " | ".join(cell(k) for k in counts) + f" | {latency} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--variants", help="comma-separated names (default: all)")
    parser.add_argument("--dump", type=Path, help="write every answer to this JSON file")
    args = parser.parse_args()
    suite = yaml.safe_load(SUITE.read_text(encoding="utf-8"))
    wanted = set(args.variants.split(",")) if args.variants else None
    variants = [v for v in VARIANTS if wanted is None or v.name in wanted]
    client = OpenAI(base_url=args.base_url, api_key="unused", timeout=120, max_retries=0)
    dump: list[Any] = []
    lines = [
        "| variant | valid JSON | product | star_rating | likes exact | dislikes exact "
        "| whole answer | latency s (median / max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant in variants:
        start = time.perf_counter()
        tally = run(client, args.model, suite, variant, dump)
        lines.append(row(variant.name, tally))
        print(
            f"{variant.name}: {time.perf_counter() - start:.0f} s in all, "
            f"prompt tokens max {max(tally.prompt_tokens, default=0)}",
            file=sys.stderr,
        )
    print("\n".join(lines))
    if args.dump:
        args.dump.write_text(json.dumps(dump, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
