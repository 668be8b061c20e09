"""Self-test of tests/openai_server.py, driven by the real openai SDK over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.openai_server import OpenAIServer, Reply, Request

USER: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France?"}
]


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
def client(server: OpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as cli:
        yield cli


def ask(
    client: openai.OpenAI, model: str = "m", messages: list[ChatCompletionMessageParam] = USER
) -> str | None:
    completion = client.chat.completions.create(model=model, messages=messages)
    return completion.choices[0].message.content


def test_scripted_answer_and_usage(server: OpenAIServer, client: openai.OpenAI) -> None:
    server.on("gpt-test", "Paris is the capital")
    completion = client.chat.completions.create(model="gpt-test", messages=USER)

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-test"
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Paris is the capital"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 6  # words of all message contents
    assert completion.usage.completion_tokens == 4
    assert completion.usage.total_tokens == 10


def test_explicit_usage_and_null_content(server: OpenAIServer, client: openai.OpenAI) -> None:
    server.on("m", Reply(content=None, prompt_tokens=11, completion_tokens=0))
    completion = client.chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].message.content is None
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.total_tokens) == (11, 11)


def test_list_of_replies_consumed_in_order_last_repeats(
    server: OpenAIServer, client: openai.OpenAI
) -> None:
    server.on("m", ["one", Reply(content="two"), {"answer": 3}])
    answers = [ask(client) for _ in range(4)]
    assert answers[:2] == ["one", "two"]
    assert [json.loads(a or "") for a in answers[2:]] == [{"answer": 3}, {"answer": 3}]


def test_callable_handler_sees_request(server: OpenAIServer, client: openai.OpenAI) -> None:
    def echo(request: Request) -> str:
        return f"{request.model}: {request.last_user_content.upper()}"

    server.on_any(echo)
    server.on("fixed", "fixed answer")
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]
    assert ask(client, "any-model", messages) == "any-model: SECOND"
    assert ask(client, "fixed", messages) == "fixed answer"
    assert [m.id for m in client.models.list()] == ["fixed"]


def test_server_error_becomes_internal_server_error(
    server: OpenAIServer, client: openai.OpenAI
) -> None:
    server.on("m", Reply(status=500, error_message="boom"))
    with pytest.raises(openai.InternalServerError) as info:
        ask(client)
    assert info.value.status_code == 500
    assert "boom" in str(info.value)
    assert isinstance(info.value.body, dict)
    assert info.value.body["message"] == "boom"


def test_rate_limit_with_headers(server: OpenAIServer, client: openai.OpenAI) -> None:
    server.on("m", Reply(status=429, headers={"Retry-After": "0.1"}))
    with pytest.raises(openai.RateLimitError) as info:
        ask(client)
    assert info.value.status_code == 429
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after"] == "0.1"


def test_sdk_retries_after_429(server: OpenAIServer) -> None:
    server.on("m", [Reply(status=429, headers={"Retry-After": "0.05"}), "recovered"])
    with openai.OpenAI(base_url=server.url, api_key="x", max_retries=1) as retrying:
        assert ask(retrying) == "recovered"
    assert server.calls("m") == 2
    retry_counts = [r.headers["x-stainless-retry-count"] for r in server.requests]
    assert retry_counts == ["0", "1"]


def test_handler_exception_is_500_and_recorded(server: OpenAIServer, client: openai.OpenAI) -> None:
    def broken(request: Request) -> str:
        raise KeyError("no such fixture")

    server.on("m", broken)
    with pytest.raises(openai.InternalServerError) as info:
        ask(client)
    assert "no such fixture" in str(info.value)
    assert len(server.handler_errors) == 1
    assert isinstance(server.handler_errors[0], KeyError)
    assert server.calls("m") == 1


@pytest.mark.parametrize("raw", [b"not json", b'{"id": "chatcmpl-1", "choices": ['])
def test_malformed_body(server: OpenAIServer, client: openai.OpenAI, raw: bytes) -> None:
    server.on("m", Reply(body=raw))
    # openai 3.57 lets the decoder's error escape; it is not wrapped in an openai.APIError.
    with pytest.raises(json.JSONDecodeError):
        ask(client)
    # The connection stays usable afterwards.
    server.on("m", "fine")
    assert ask(client) == "fine"


def test_malformed_error_body(server: OpenAIServer, client: openai.OpenAI) -> None:
    server.on("m", Reply(status=502, body=b"<html>bad gateway</html>"))
    with pytest.raises(openai.InternalServerError) as info:
        ask(client)
    assert info.value.status_code == 502
    assert info.value.body == "<html>bad gateway</html>"


def test_unknown_model_is_not_found(server: OpenAIServer, client: openai.OpenAI) -> None:
    server.on("known", "hi")
    with pytest.raises(openai.NotFoundError) as info:
        ask(client, "gpt-missing")
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    assert "The model `gpt-missing` does not exist" in str(info.value)
    assert server.calls("gpt-missing") == 1


def test_unknown_path_is_404(server: OpenAIServer, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="m", input="x")
    assert server.requests[0].path == "/v1/embeddings"
    assert server.calls() == 0


def test_delay_is_honoured(server: OpenAIServer, client: openai.OpenAI) -> None:
    server.on("m", Reply(content="late", delay=0.3))
    started = time.monotonic()
    assert ask(client) == "late"
    assert time.monotonic() - started >= 0.25


def test_delay_longer_than_client_timeout(server: OpenAIServer) -> None:
    server.on("m", [Reply(content="late", delay=2.0), "on time"])
    with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=0.2) as cli:
        with pytest.raises(openai.APITimeoutError):
            ask(cli)
        assert ask(cli) == "on time"


def test_requests_recorded_with_headers_and_counted(
    server: OpenAIServer, client: openai.OpenAI
) -> None:
    server.on("a", "A")
    server.on("b", Reply(status=400))
    ask(client, "a")
    ask(client, "a")
    with pytest.raises(openai.BadRequestError):
        ask(client, "b")

    assert (server.calls(), server.calls("a"), server.calls("b"), server.calls("c")) == (3, 2, 1, 0)
    requests = server.requests
    assert [r.model for r in requests] == ["a", "a", "b"]
    first = requests[0]
    assert first.path == "/v1/chat/completions"
    assert first.method == "POST"
    assert first.headers["authorization"] == "Bearer x"
    assert first.headers["content-type"] == "application/json"
    assert first.messages == USER
    assert first.body["model"] == "a"
    assert json.loads(first.raw_body) == first.body

    requests.clear()  # a copy
    assert len(server.requests) == 3
    server.clear_requests()
    assert server.requests == []
    assert server.calls() == 0


def test_concurrent_requests(server: OpenAIServer, client: openai.OpenAI) -> None:
    workers = 8
    # Every handler waits until all of them are in flight: only a concurrent server passes.
    barrier = threading.Barrier(workers, timeout=10)

    def answer(request: Request) -> str:
        barrier.wait()
        return f"echo {request.last_user_content}"

    server.on("m", answer)
    results: dict[int, str | None] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = ask(client, messages=[{"role": "user", "content": str(i)}])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert results == {i: f"echo {i}" for i in range(workers)}
    assert server.calls("m") == workers
    assert server.handler_errors == []


def test_streaming(server: OpenAIServer, client: openai.OpenAI) -> None:
    server.on("m", "hello streaming world")
    stream = client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello streaming world"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_stop_is_prompt_with_a_delayed_request_in_flight() -> None:
    server = OpenAIServer().start()
    server.on("m", Reply(content="never", delay=30))
    errors: list[BaseException] = []
    with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as cli:

        def call() -> None:
            try:
                ask(cli)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=call)
        thread.start()
        deadline = time.monotonic() + 10
        while server.calls() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5
        thread.join(timeout=10)
        assert len(errors) == 1
        assert isinstance(errors[0], openai.APIConnectionError)
        # Kept-alive connections are cut too: nothing answers after stop().
        with pytest.raises(openai.APIConnectionError):
            ask(cli)
    server.stop()  # idempotent
