"""One chat-completion request: its identity, and one call through the ``openai`` SDK."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email.utils
import functools
import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pytest_llmeval.models import HEADERS_PARAM, ModelSpec
from pytest_llmeval.suite.model import Message, ResponseFormat

if TYPE_CHECKING:  # the SDK takes 0.4 s to import: a run that only replays never loads it
    import openai

# The SDK refuses to build a client without a key; a keyless local endpoint gets this.
NO_KEY = "no-key-needed"
# Where the SDK sends a request when neither the model nor the environment names a base URL.
OPENAI_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class Retry:
    """How a failed attempt may be tried again: after a 429 (``rate_limited``) or another
    failure, and after the delay the endpoint asked for (``after``, seconds), if any."""

    rate_limited: bool = False
    after: float | None = None


class CallError(Exception):
    """No answer could be had from the endpoint: why, and the HTTP attempts it took (and
    the 429s among them), which the run's figures count too. ``retry`` is set on a failed
    attempt that may be tried again; ``in_flight`` is how many requests of its model were
    in flight when its last attempt started, itself included."""

    def __init__(
        self,
        message: str,
        *,
        attempts: int = 0,
        rate_limited: int = 0,
        retry: Retry | None = None,
        in_flight: int = 0,
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.rate_limited = rate_limited
        self.retry = retry
        self.in_flight = in_flight

    def __reduce__(self) -> tuple[Any, ...]:
        again = functools.partial(
            CallError,
            attempts=self.attempts,
            rate_limited=self.rate_limited,
            in_flight=self.in_flight,
        )
        return again, (str(self),)

    def redacted(self, models: Iterable[ModelSpec]) -> CallError:
        """The same error with every key of ``models`` taken out of its message."""
        return CallError(redact(str(self), *models), attempts=self.attempts,
                         rate_limited=self.rate_limited, retry=self.retry,
                         in_flight=self.in_flight)  # fmt: skip


@dataclass(frozen=True)
class Completion:
    text: str
    latency_s: float
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    # Why an answer may be wrong that its text does not show (a refusal, a cut-off).
    note: str = ""
    cached: bool = False
    attempts: int = 1
    rate_limited: int = 0  # attempts answered 429
    in_flight: int = 0  # its model's requests in flight as its last attempt began, itself too
    # Wall-clock time the answer came in (or was replayed): where its run ends in LangSmith.
    finished_at: float = field(default_factory=time.time, compare=False)


@dataclass(frozen=True)
class LLMRequest:
    """A request as the cache knows it: what determines the answer, and where it belongs."""

    model: ModelSpec
    messages: tuple[Message, ...]
    response_format: ResponseFormat
    params: Mapping[str, Any] = field(default_factory=dict)
    repeat: int = 0
    # Where its recorded answer is filed: (suite, case) for a YAML case, (test module,
    # test name) for a Python test; `pinned` when that names exactly one answer.
    group: str = ""
    name: str = ""
    pinned: bool = False
    # How errors name it: "file:line: case 'id', model m".
    where: str = ""
    # The expected answer's length, for estimating output tokens before the call.
    expected_chars: int = 0

    def body(self) -> dict[str, Any]:
        """Everything sent besides model and messages (the SDK's extra_body); the model's
        ``extra_headers`` go as headers (its clients' default headers), not here."""
        body = self._body(self.model.params)
        body.pop(HEADERS_PARAM, None)
        return body

    def _body(self, model_params: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {**model_params, **self.params}
        shape = _wire_format(self.response_format, self.model)
        if shape is not None:
            body["response_format"] = shape
        return body

    @cached_property
    def key(self) -> str:
        """A digest of everything that determines the answer, and of nothing else: no key."""
        material = {
            "endpoint": endpoint_url(self.model),
            "model": self.model.model,
            "messages": [[m.role, m.content] for m in self.messages],
            # The params as written: a `${TOKEN}` read from the environment is not in it.
            "body": self._body(self.model.identity_params),
            "repeat": self.repeat,
            **_provider_identity(self.model),
        }
        text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


def _provider_identity(model: ModelSpec) -> dict[str, str]:
    """What besides endpoint and model names an answer's source: an Azure deployment's API
    version (its endpoint URL holds the deployment). Nothing for OpenAI's protocol, so the
    digests of recordings made before providers existed stay as they were."""
    if model.provider == "azure":
        return {"provider": "azure", "api_version": (model.api_version or "").strip()}
    return {}


@dataclass
class _Attempts:
    count: int = 0
    rate_limited: int = 0
    last_started: float = 0.0


# The SDK retries inside one call; its HTTP client's hooks count the attempts of the call
# running in the current task (and the 429s among them), and time the last one.
_ATTEMPTS: ContextVar[_Attempts | None] = ContextVar("llmeval_attempts", default=None)


async def _on_request(_request: Any) -> None:
    attempts = _ATTEMPTS.get()
    if attempts is not None:
        attempts.count += 1
        attempts.last_started = time.perf_counter()


async def _on_response(response: Any) -> None:
    attempts = _ATTEMPTS.get()
    if attempts is not None and response.status_code == 429:
        attempts.rate_limited += 1


ResponseHook = Callable[[Any], Awaitable[None]]


def async_client(
    model: ModelSpec, *, timeout: float, on_response: ResponseHook
) -> openai.AsyncOpenAI:
    """The SDK's client for a model, with every HTTP response shown to ``on_response``
    (which adapts the model's concurrency). It makes one attempt per call: the engine
    retries, each attempt through the model's limit, so that a retry waits its turn there
    as a new request does. The timeout is a deadline for each attempt, not only for each
    read from the socket."""
    import openai

    seconds = model.timeout or timeout
    http = _deadline_clients().asynchronous(
        deadline=seconds,
        event_hooks={"request": [_on_request], "response": [_on_response, on_response]},
    )
    if model.provider == "azure":
        return openai.AsyncAzureOpenAI(**_arguments(model, seconds, 0, http), **_azure(model))
    return openai.AsyncOpenAI(**_arguments(model, seconds, 0, http), **_openai(model))


def sync_client(model: ModelSpec, *, timeout: float, max_retries: int) -> openai.OpenAI:
    """A plain SDK client for the model, for code under test that takes one (its timeout a
    deadline for each attempt too, overrun by at most one read)."""
    import openai

    seconds = model.timeout or timeout
    http = _deadline_clients().synchronous(deadline=seconds)
    if model.provider == "azure":
        return openai.AzureOpenAI(**_arguments(model, seconds, max_retries, http), **_azure(model))
    return openai.OpenAI(**_arguments(model, seconds, max_retries, http), **_openai(model))


def _arguments(model: ModelSpec, seconds: float, max_retries: int, http: Any) -> dict[str, Any]:
    """What every SDK client of a model is built with, whoever serves it."""
    return {
        "timeout": seconds,
        "max_retries": max_retries,
        "http_client": http,
        "default_headers": model.headers() or None,
    }


def _openai(model: ModelSpec) -> dict[str, Any]:
    return {"api_key": model.api_key() or NO_KEY, "base_url": model.base_url}


def _azure(model: ModelSpec) -> dict[str, Any]:
    """The SDK's Azure client's own arguments (endpoint, API version, key): it sends the
    deployment (the request's model) in the path, the version in the query and the key as
    ``api-key``. The key is always given: left out, the SDK would read AZURE_OPENAI_API_KEY
    (or an AD token) whatever api_key_env says."""
    return {
        "azure_endpoint": (model.azure_endpoint or "").strip(),
        "api_version": (model.api_version or "").strip(),
        "api_key": model.api_key() or NO_KEY,
    }


@dataclass(frozen=True)
class _DeadlineClients:
    asynchronous: Callable[..., Any]
    synchronous: Callable[..., Any]


@functools.cache
def _deadline_clients() -> _DeadlineClients:
    """The SDK's HTTP clients, each attempt bounded as a whole.

    The HTTP library's timeout bounds each read: an endpoint that trickles a byte a second
    (a proxy's keep-alive whitespace, a server stuck mid-body) keeps a request going for as
    long as it trickles. Here one ``send`` (one attempt: the SDK retries around it) ends
    when its deadline passes, with the library's own ReadTimeout, which the SDK retries as
    any timeout.
    """
    import openai

    http = _http_library(openai.DefaultAsyncHttpxClient)

    class AsyncDeadlineClient(openai.DefaultAsyncHttpxClient):
        def __init__(self, *, deadline: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.deadline = deadline

        async def send(self, request: Any, **kwargs: Any) -> Any:
            limit = asyncio.timeout(self.deadline)
            try:
                async with limit:
                    return await super().send(request, **kwargs)
            except TimeoutError:
                if not limit.expired():
                    raise
                raise http.ReadTimeout(_overdue(self.deadline), request=request) from None

    class DeadlineClient(openai.DefaultHttpxClient):
        def __init__(self, *, deadline: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.deadline = deadline

        def send(self, request: Any, *, stream: bool = False, **kwargs: Any) -> Any:
            # A blocking read cannot be cut short: the body is read piece by piece, and the
            # first piece after the deadline ends the attempt.
            ends = time.monotonic() + self.deadline
            response = super().send(request, stream=True, **kwargs)
            if stream:
                return response
            try:
                response.stream = _DeadlineStream(response.stream, ends, self.deadline)
                response.read()
            except BaseException:
                response.close()
                raise
            return response

    class _DeadlineStream(http.SyncByteStream):  # type: ignore[misc,name-defined]
        def __init__(self, inner: Any, ends: float, deadline: float) -> None:
            self._inner = inner
            self._ends = ends
            self._deadline = deadline

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                if time.monotonic() > self._ends:
                    raise http.ReadTimeout(_overdue(self._deadline))
                yield chunk

        def close(self) -> None:
            self._inner.close()

    return _DeadlineClients(AsyncDeadlineClient, DeadlineClient)


def _overdue(deadline: float) -> str:
    return f"no whole response within {deadline:g}s"


def _http_library(client_class: type) -> ModuleType:
    """The HTTP library the SDK's client is built on (httpx; httpx2 in later SDKs)."""
    for base in client_class.__mro__:
        root = base.__module__.partition(".")[0]
        if root not in ("openai", "builtins"):
            return sys.modules[root]
    raise RuntimeError(f"cannot tell the HTTP library of {client_class!r}")


# Status codes worth another attempt, as the SDK has them: a request timeout, a lock
# timeout, a rate limit, a server error.
_RETRIED = frozenset({408, 409, 429})


async def call(
    client: openai.AsyncOpenAI, request: LLMRequest, *, attempt: int = 1, since: float = 0.0
) -> Completion:
    """Make attempt number ``attempt`` of the request (the first began at ``since``, a
    ``time.perf_counter``); the answer (every key of its model taken out of it), or
    CallError saying why there is none (key redacted), with ``retry`` set when another
    attempt may succeed. Its message counts the attempts, as the last one's would."""
    import openai

    model = request.model
    attempts = _Attempts()
    token = _ATTEMPTS.set(attempts)
    started = since or time.perf_counter()
    tries = f" after {attempt} attempts" if attempt > 1 else ""
    try:
        # Parameters go in extra_body: endpoints take ones the SDK's signature lacks
        # (llama.cpp's repeat_penalty, top_k), which as keywords raise TypeError. The
        # retry count is the SDK's header, which it would send had it retried itself.
        response = await client.chat.completions.create(
            model=model.model,
            messages=[{"role": m.role, "content": m.content} for m in request.messages],  # type: ignore[misc]
            extra_body=request.body(),
            extra_headers={"x-stainless-retry-count": str(attempt - 1)},
        )
    except openai.APIStatusError as exc:
        failure = f"HTTP {exc.status_code} from {_endpoint(model)}{tries}: {_message(exc)}"
        raise _failed(failure, model, attempts, _retry(exc)) from None
    except openai.APITimeoutError:
        waited = time.perf_counter() - started
        seconds = f"{client.timeout:g}s" if isinstance(client.timeout, float) else "the timeout"
        failure = f"timed out after {seconds} at {_endpoint(model)}{tries}"
        if attempt > 1:
            failure += f", {waited:.1f}s in all"
        raise _failed(failure, model, attempts, Retry()) from None
    except openai.APIConnectionError as exc:
        failure = f"cannot reach {_endpoint(model)}{tries}: {_why(exc)}"
        raise _failed(failure, model, attempts, Retry()) from None
    except Exception as exc:
        # The SDK lets a 200 whose body is not JSON through as a bare JSONDecodeError, and
        # a parameter the endpoint cannot take may fail inside it: whatever it is, it is
        # this case's error, told in one line, not a traceback through pytest.
        failure = f"bad response from {_endpoint(model)}: {type(exc).__name__}: {exc}"
        raise _failed(failure, model, attempts) from None
    finally:
        _ATTEMPTS.reset(token)
    latency = time.perf_counter() - attempts.last_started
    return _completion(response, latency, model, attempts)


def _failed(
    failure: str, model: ModelSpec, attempts: _Attempts, retry: Retry | None = None
) -> CallError:
    return CallError(redact(failure, model), attempts=attempts.count,
                     rate_limited=attempts.rate_limited, retry=retry)  # fmt: skip


def _retry(exc: openai.APIStatusError) -> Retry | None:
    """Whether an HTTP error is worth another attempt, and when the endpoint said to make it."""
    headers = exc.response.headers
    told = headers.get("x-should-retry", "")  # the endpoint's own word, which the SDK obeys
    status = exc.status_code
    if told == "false" or (told != "true" and status not in _RETRIED and status < 500):
        return None
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    if isinstance(error, dict) and error.get("code") == "insufficient_quota":
        return None  # a 429 that no wait ends: the account has run out of credit
    return Retry(rate_limited=status == 429, after=retry_after(headers))


# The longest wait an endpoint may ask for that is honoured as asked (the SDK's bound):
# beyond it, the request waits this long, and no more, before its next attempt.
MAX_RETRY_AFTER_S = 120.0


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds an answer asks the client to wait before it tries again: ``retry-after-ms``,
    or ``Retry-After`` in seconds or as an HTTP date (``now``: the epoch time it is read
    against); None when it says nothing readable. Never negative, at most
    ``MAX_RETRY_AFTER_S``."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        text = (headers.get(name) or "").strip()
        try:
            seconds = float(text) * scale
        except ValueError:
            continue
        if not math.isnan(seconds):
            return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
    text = (headers.get("retry-after") or "").strip()
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" in a date: UTC by RFC 5322, which HTTP dates are
        when = when.replace(tzinfo=dt.UTC)
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _why(exc: BaseException) -> str:
    """What broke the connection: the first cause that says something (a reset's ReadError
    says nothing; the ConnectionResetError behind it does)."""
    seen: BaseException | None = exc.__cause__ or exc
    for _ in range(8):  # a chain may loop
        if seen is None:
            break
        if str(seen):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return type(exc.__cause__ or exc).__name__


def _completion(response: Any, latency: float, model: ModelSpec, attempts: _Attempts) -> Completion:
    """Read the answer out of a response the SDK did not validate (it may be any shape)."""
    choices = getattr(response, "choices", None)
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    if message is None or not (content is None or isinstance(content, str)):
        failure = f"bad response from {_endpoint(model)}: no answer text in {response!r:.200}"
        raise _failed(failure, model, attempts)
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
    return Completion(
        text=received(content or "", model),
        latency_s=latency,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost=cost_of(model, tokens_in, tokens_out),
        note=received("; ".join(notes), model),
        attempts=attempts.count,
        rate_limited=attempts.rate_limited,
    )


# A lone surrogate (JSON may spell one: "\ud800") is no text: no file or terminal takes it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def received(text: str, model: ModelSpec) -> str:
    """Text from an endpoint as the run keeps it: the model's key out of it (an endpoint may
    echo it into the answer itself: a proxy's debug output, a model told it in a prompt),
    before anything records, shares or scores it; a lone surrogate as U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", redact(text, model))


def redacted(completion: Completion, models: Iterable[ModelSpec]) -> Completion:
    """The completion with every key of ``models`` out of its text and note."""
    text, note = redact(completion.text, *models), redact(completion.note, *models)
    if (text, note) == (completion.text, completion.note):
        return completion
    return dataclasses.replace(completion, text=text, note=note)


def cost_of(model: ModelSpec, tokens_in: int | None, tokens_out: int | None) -> float | None:
    if model.price is None or tokens_in is None or tokens_out is None:
        return None
    return model.price.cost(tokens_in, tokens_out)


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


def endpoint_url(model: ModelSpec) -> str:
    """The URL the SDK sends to, without credentials (an Azure deployment's, up to its
    operation: the API version is the query, which no shown URL keeps)."""
    if model.provider == "azure":
        endpoint = without_credentials(model.azure_endpoint or "")
        return f"{endpoint}/openai/deployments/{model.model}"
    return without_credentials(model.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL)


@functools.lru_cache(maxsize=256)  # asked for each request's digest, of a few URLs a run
def without_credentials(raw: str) -> str:
    """A URL fit to show or store: no userinfo, no query string, no trailing slash."""
    url = urlsplit(raw.strip())
    host = url.hostname or ""
    if url.port is not None:
        host += f":{url.port}"
    return urlunsplit((url.scheme, host, url.path.rstrip("/"), "", ""))


def _endpoint(model: ModelSpec) -> str:
    if model.base_url is None and model.provider == "openai":
        if os.environ.get("OPENAI_BASE_URL"):  # the SDK's own variable: say where it went
            return f"{model.name} ({endpoint_url(model)}, from OPENAI_BASE_URL)"
        return f"{model.name} (OpenAI)"
    return f"{model.name} ({endpoint_url(model)})"


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return exc.message


# Shorter than this, a "key" is a placeholder for a local server ("x", "none"): hiding it
# would hide those letters wherever they appear in ordinary words.
SECRET_MIN = 8


def redact(text: str, *models: ModelSpec) -> str:
    """Remove the models' API keys, and what their ``${NAME}`` references read from the
    environment, from text that may be shown or stored: each as a whole token (not inside
    a longer one), and only a value long enough to be a key."""
    for model in models:
        key = model.api_key()
        if not (key or model.from_env) or not text:
            continue
        secrets = set(model.from_env)
        if key:
            # The raw variable too: a key with stray whitespace may be echoed as it was set.
            secrets |= {key, os.environ.get(model.api_key_env or "", ""), repr(key)[1:-1]}
        for secret in secrets:
            secret = secret.strip()
            if len(secret) >= SECRET_MIN and secret in text:
                text = _token(secret).sub("***", text)
    return text


@functools.lru_cache(maxsize=64)
def _token(secret: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(secret)}(?![\w-])")
