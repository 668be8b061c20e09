"""Chat-completion calls through the ``openai`` SDK, timed, counted and costed."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai

from pytest_llmeval.cases import Message, ResponseFormat
from pytest_llmeval.models import ModelSpec

# The SDK refuses to build a client without a key; a keyless local endpoint gets this.
NO_KEY = "no-key-needed"


class CallError(Exception):
    """No answer could be had from the endpoint (after the SDK's retries)."""


@dataclass(frozen=True)
class Completion:
    text: str
    latency_s: float
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    # Why an answer may be wrong that its text does not show (a refusal, a cut-off).
    note: str = ""


class Caller:
    """One SDK client per model, reused for every call in this process."""

    def __init__(self, *, timeout: float, max_retries: int) -> None:
        self.timeout = timeout
        self.max_retries = max_retries
        self._clients: dict[str, openai.OpenAI] = {}

    def client(self, model: ModelSpec) -> openai.OpenAI:
        if model.name not in self._clients:
            self._clients[model.name] = openai.OpenAI(
                api_key=model.api_key() or NO_KEY,
                base_url=model.base_url,
                timeout=model.timeout or self.timeout,
                max_retries=self.max_retries,
            )
        return self._clients[model.name]

    def complete(
        self,
        model: ModelSpec,
        messages: Sequence[Message],
        response_format: ResponseFormat,
        **params: Any,
    ) -> Completion:
        body: dict[str, Any] = {**model.params, **params}
        shape = _wire_format(response_format, model)
        if shape is not None:
            body["response_format"] = shape
        started = time.perf_counter()
        try:
            # Parameters go in extra_body: endpoints take ones the SDK's signature lacks
            # (llama.cpp's repeat_penalty, top_k), which as keywords raise TypeError.
            response = self.client(model).chat.completions.create(
                model=model.model,
                messages=[{"role": m.role, "content": m.content} for m in messages],  # type: ignore[misc]
                extra_body=body,
            )
        except openai.APIStatusError as exc:
            raise CallError(
                redact(f"HTTP {exc.status_code} from {_endpoint(model)}: {_message(exc)}", model)
            ) from None
        except openai.APITimeoutError:
            raise CallError(
                f"timed out after {model.timeout or self.timeout:g}s "
                f"({self.max_retries} retries) at {_endpoint(model)}"
            ) from None
        except openai.APIConnectionError as exc:
            raise CallError(
                redact(f"cannot reach {_endpoint(model)}: {exc.__cause__ or exc}", model)
            ) from None
        except Exception as exc:
            # The SDK lets a 200 whose body is not JSON through as a bare JSONDecodeError, and
            # a parameter the endpoint cannot take may fail inside it: whatever it is, it is
            # this case's error, told in one line, not a traceback through pytest.
            reason = f"{type(exc).__name__}: {exc}"
            raise CallError(
                redact(f"bad response from {_endpoint(model)}: {reason}", model)
            ) from None
        return _completion(response, time.perf_counter() - started, model)


def _completion(response: Any, latency: float, model: ModelSpec) -> Completion:
    """Read the answer out of a response the SDK did not validate (it may be any shape)."""
    choices = getattr(response, "choices", None)
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    if message is None or not (content is None or isinstance(content, str)):
        raise CallError(
            f"bad response from {_endpoint(model)}: no answer text in {response!r:.200}"
        )
    notes = []
    if getattr(message, "refusal", None):
        notes.append(f"the model refused: {message.refusal}")
    if getattr(choice, "finish_reason", None) == "length":
        notes.append("the answer was cut off at the token limit (finish_reason: length)")
    usage = getattr(response, "usage", None)
    tokens_in = getattr(usage, "prompt_tokens", None)
    tokens_out = getattr(usage, "completion_tokens", None)
    if not (isinstance(tokens_in, int) and isinstance(tokens_out, int)):
        tokens_in = tokens_out = None
    cost = None
    if model.price is not None and tokens_in is not None and tokens_out is not None:
        cost = model.price.cost(tokens_in, tokens_out)
    return Completion(content or "", latency, tokens_in, tokens_out, cost, "; ".join(notes))


def _wire_format(response_format: ResponseFormat, model: ModelSpec) -> dict[str, Any] | None:
    if not response_format.json_mode:
        return None
    if not response_format.schema:
        return {"type": "json_object"}
    if model.schema_style == "json_object":
        # llama.cpp's server and some other OpenAI-compatible servers take this form.
        return {"type": "json_object", "schema": response_format.schema}
    return {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": response_format.schema},
    }


def _endpoint(model: ModelSpec) -> str:
    if model.base_url is None:
        return f"{model.name} (OpenAI)"
    # Credentials may sit in a URL (user:token@host, ?api-key=...): show neither part.
    url = urlsplit(model.base_url)
    host = url.hostname or ""
    if url.port is not None:
        host += f":{url.port}"
    return f"{model.name} ({urlunsplit((url.scheme, host, url.path, '', ''))})"


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return exc.message


def redact(text: str, model: ModelSpec) -> str:
    """Remove the model's API key from text that may be shown or stored."""
    key = model.api_key()
    if not key:
        return text
    # The raw variable too: a key with stray whitespace may be echoed as it was set.
    for secret in {key, os.environ.get(model.api_key_env or "", ""), repr(key)[1:-1]}:
        if secret.strip():
            text = text.replace(secret, "***")
    return text
