"""A scriptable OpenAI-compatible HTTP server for tests.

Tests start it on 127.0.0.1 (an ephemeral port) and point the real ``openai`` SDK at it, so the
whole HTTP path (keep-alive connections, status codes, error bodies, retry headers) is exercised::

    with OpenAIServer() as server:
        server.on("gpt-test", "Paris")
        client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
        client.chat.completions.create(model="gpt-test", messages=[...])
        assert server.calls("gpt-test") == 1

Endpoints:

* ``POST /v1/chat/completions``: answered from the model's script (see :meth:`OpenAIServer.on`).
  ``"stream": true`` requests get the same answer as server-sent events.
* ``POST /openai/deployments/{deployment}/chat/completions?api-version=...``: Azure OpenAI's
  shape, answered from the deployment's script (:attr:`OpenAIServer.azure_endpoint` is the
  endpoint to configure); without ``api-version``, Azure's 404.
* ``GET /v1/models`` and ``GET /v1/models/{id}``: the scripted model ids.
* anything else: 404 with OpenAI's error shape.

Faults: a :class:`Reply` with ``fault`` set misbehaves at the connection level (a reset, a
hang, a trickle, a body cut short), and ``body`` sends any bytes at all. A
:class:`FaultPlan` draws faults by rate from a seed, for each request and attempt alike in
every run, whatever the order requests arrive in; :class:`Faulty` puts a plan in front of a
handler::

    plan = FaultPlan(rate=0.25, seed=7)
    faulty = Faulty(plan, answer)          # a handler: a fault, or answer(request)
    server.on_any(faulty)
    plan.outcome("m\0<last user message>", max_retries=2)  # what the engine will end with

Rate limits: :meth:`OpenAIServer.rate_limit` puts a token bucket (R requests a second, a
burst of B) in front of one model or of every model together; a request that finds it
empty is answered 429 with ``Retry-After`` in whole seconds, as an HTTP date, as
``retry-after-ms``, or without it::

    server.rate_limit(rate=20, burst=5, retry_after="seconds")
    server.rate_limited()                  # the 429s it sent

Standard library only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import hashlib
import json
import math
import re
import select
import socket
import struct
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import MappingProxyType, TracebackType
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "FAULT_KINDS",
    "FINAL_FAULTS",
    "RATE_LIMITS",
    "RETRY_AFTER_STYLES",
    "Fault",
    "FaultPlan",
    "Faulty",
    "Handler",
    "OpenAIServer",
    "Outcome",
    "Reply",
    "ReplyValue",
    "Request",
    "Script",
]

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
AZURE_CHAT_PATH = re.compile(r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions")

# How long stop() waits, in total, for handler threads that are still running user code.
_STOP_JOIN_SECONDS = 1.0
# How often a hanging or trickling handler looks whether the client or the server has gone.
_HOLD_POLL_SECONDS = 0.05

Fault: TypeAlias = Literal["reset", "hang", "trickle", "truncate"]
"""Connection-level misbehaviour of a :class:`Reply`:

* ``reset``: the connection is reset (TCP RST) before anything is sent.
* ``hang``: nothing is sent; the connection is held until the client gives up (or stop()).
* ``trickle``: the status line and headers are sent, then the body's leading whitespace one
  byte every ``trickle_interval`` seconds: ``trickle_bytes`` of it and then the answer, or,
  with ``trickle_bytes`` None, for as long as the client listens.
* ``truncate``: the headers announce the whole body; half of it is sent, then the
  connection is closed.
"""


@dataclass
class Reply:
    """One scripted answer to a chat-completion request."""

    content: str | None = None
    """Assistant message content (``None`` gives ``"content": null``)."""
    status: int = 200
    """HTTP status; a non-2xx status sends an OpenAI-shaped error body."""
    error_message: str | None = None
    """The error body's ``message`` (a default is derived from the status)."""
    delay: float = 0.0
    """Seconds to wait (in the handler thread) before answering; cut short by ``stop()``."""
    body: bytes | None = None
    """Raw response body, sent as is with ``status`` and Content-Type application/json."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra response headers, e.g. ``{"Retry-After": "0.1"}``; may replace Content-Type."""
    prompt_tokens: int | None = None
    """Default: whitespace-separated words in all message contents of the request."""
    completion_tokens: int | None = None
    """Default: whitespace-separated words in ``content``."""
    fault: Fault | None = None
    """Misbehave at the connection level instead of answering (see :data:`Fault`)."""
    trickle_interval: float = 1.0
    """``fault="trickle"``: seconds between bytes."""
    trickle_bytes: int | None = None
    """``fault="trickle"``: bytes of whitespace before the answer; None trickles for ever."""


@dataclass(frozen=True)
class Request:
    """A request as it arrived at the server."""

    path: str
    """URL path, without the query string."""
    model: str | None
    """The body's ``model`` when it is a string, else ``None``."""
    body: dict[str, Any]
    """Parsed JSON body (``{}`` when absent or not a JSON object)."""
    headers: dict[str, str]
    """Header names lower-cased; repeated headers joined with ``", "``."""
    method: str = "POST"
    raw_body: bytes = b""
    query: str = ""
    """The URL's query string, as sent (``api-version=2024-10-21``)."""

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages")
        if not isinstance(messages, list):
            return []
        return [m for m in messages if isinstance(m, dict)]

    @property
    def last_user_content(self) -> str:
        """Text of the last ``user`` message ("" if there is none)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""


ReplyValue: TypeAlias = "Reply | str | dict[str, Any] | list[Any]"
"""What a handler may return: a str becomes the content, a dict or list is JSON-encoded."""

Handler: TypeAlias = Callable[[Request], ReplyValue]

_Fixed: TypeAlias = "Reply | str | dict[str, Any]"
Script: TypeAlias = "Handler | _Fixed | Sequence[Handler | _Fixed]"
"""What ``on()`` accepts: a handler, a fixed reply, or a list of them consumed in order."""


def _text_of(content: Any) -> str:
    """Text of a message content: a string, or a list of parts whose text parts are joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        return "\n".join(texts)
    return ""


def _count_words(text: str | None) -> int:
    return len(text.split()) if text else 0


def _to_reply(value: object) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(content=value)
    if isinstance(value, (dict, list)):
        return Reply(content=json.dumps(value))
    raise TypeError(f"a handler must return Reply, str, dict or list, not {type(value).__name__}")


def _compile(script: Script) -> Handler:
    """Turn what ``on()`` accepts into one callable."""
    if isinstance(script, (Reply, str, dict)):
        fixed = script
        return lambda _request: fixed
    if callable(script):
        return script
    if isinstance(script, Sequence):
        steps = [_compile(step) for step in script]
        if not steps:
            raise ValueError("a list of replies must not be empty")
        lock = threading.Lock()
        position = [0]

        def next_step(request: Request) -> ReplyValue:
            with lock:
                index = min(position[0], len(steps) - 1)
                position[0] += 1
            return steps[index](request)

        return next_step
    raise TypeError(f"cannot script a model with {type(script).__name__}")


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    fault: Fault | None = None
    trickle_interval: float = 1.0
    trickle_bytes: int | None = None


def _json_response(status: int, value: object, headers: dict[str, str] | None = None) -> _Response:
    merged = {"Content-Type": "application/json"}
    merged.update(headers or {})
    return _Response(status, json.dumps(value).encode(), merged)


def _error_kind(status: int) -> tuple[str, str | None]:
    if status == 401:
        return "invalid_request_error", "invalid_api_key"
    if status == 403:
        return "permission_error", None
    if status == 429:
        return "requests", "rate_limit_exceeded"
    if status >= 500:
        return "server_error", None
    if 400 <= status < 500:
        return "invalid_request_error", None
    return "api_error", None


def _error_response(
    status: int,
    message: str | None = None,
    *,
    code: str | None = None,
    error_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> _Response:
    default_type, default_code = _error_kind(status)
    if message is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        message = f"Scripted error: {status} {phrase}"
    error = {
        "message": message,
        "type": error_type or default_type,
        "param": None,
        "code": code if code is not None else default_code,
    }
    return _json_response(status, {"error": error}, headers)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, owner: OpenAIServer) -> None:
        self.owner = owner
        self.stopping = threading.Event()
        self.conn_lock = threading.Lock()
        self.connections: dict[socket.socket, threading.Thread] = {}
        super().__init__(("127.0.0.1", 0), _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can stall.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def register(self, conn: socket.socket) -> bool:
        with self.conn_lock:
            if self.stopping.is_set():
                return False
            self.connections[conn] = threading.current_thread()
            return True

    def unregister(self, conn: socket.socket) -> None:
        with self.conn_lock:
            self.connections.pop(conn, None)

    def close_connections(self) -> list[threading.Thread]:
        """Wake every handler thread blocked on its socket; return those threads."""
        with self.conn_lock:
            items = list(self.connections.items())
        for conn, _thread in items:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return [thread for _conn, thread in items]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients going away (or stop() cutting connections) is normal here; stay quiet.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # False when the server is already stopping: then serve nothing on this connection.
        self._accepted = self.server.register(self.connection)

    def handle(self) -> None:
        if self._accepted:
            super().handle()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        try:
            raw = self._read_body()
        except ValueError:  # a malformed Content-Length or chunk size
            self.send_error(400)
            self.close_connection = True
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        model = body.get("model") if isinstance(body, dict) else None
        url = urlsplit(self.path)
        request = Request(
            path=url.path,
            query=url.query,
            model=model if isinstance(model, str) else None,
            body=body if isinstance(body, dict) else {},
            headers=headers,
            method=self.command,
            raw_body=raw,
        )
        response = self.server.owner._answer(
            request, body_is_object=isinstance(body, dict), stopping=self.server.stopping
        )
        if response is None or self.server.stopping.is_set():
            self.close_connection = True
            return
        if response.fault is not None:
            self.close_connection = True
            self._misbehave(response)
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def _misbehave(self, response: _Response) -> None:
        conn: socket.socket = self.connection
        stopping = self.server.stopping
        if response.fault == "reset":
            # Linger 0: close() sends RST instead of FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        if response.fault == "hang":
            while not stopping.wait(_HOLD_POLL_SECONDS) and not _client_gone(conn):
                pass
            return
        body = response.body
        endless = response.fault == "trickle" and response.trickle_bytes is None
        padding = 0 if response.fault != "trickle" else (response.trickle_bytes or 0)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        # A trickle for ever announces more than it will ever send.
        length = 1 << 40 if endless else padding + len(body)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.flush()
        if response.fault == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            conn.shutdown(socket.SHUT_RDWR)
            return
        sent = 0
        while endless or sent < padding:
            if stopping.wait(response.trickle_interval) or _client_gone(conn):
                return
            self.wfile.write(b" ")
            self.wfile.flush()
            sent += 1
        self.wfile.write(body)


RetryAfterStyle: TypeAlias = Literal["seconds", "date", "ms", "none"]
RETRY_AFTER_STYLES: tuple[RetryAfterStyle, ...] = ("seconds", "date", "ms", "none")
"""How a 429 of :meth:`OpenAIServer.rate_limit` says when to come back: ``Retry-After``
in whole seconds (rounded up, as HTTP has it), ``Retry-After`` as an HTTP date (whole
seconds too, so rounded up to the next second), ``retry-after-ms``, or not at all."""


class TokenBucket:
    """``rate`` requests a second, at most ``burst`` at once: each request takes a token
    (answered) or finds none (429). Thread-safe; full at first."""

    def __init__(
        self,
        rate: float,
        burst: float,
        retry_after: RetryAfterStyle = "seconds",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a bucket needs rate > 0 and burst >= 1")
        if retry_after not in RETRY_AFTER_STYLES:
            raise ValueError(f"retry_after must be one of {RETRY_AFTER_STYLES}")
        self.rate = rate
        self.burst = burst
        self.retry_after = retry_after
        self._clock = clock
        self._tokens = burst
        self._at = clock()
        self._lock = threading.Lock()
        self.refused = 0

    def take(self) -> float | None:
        """None when a token was taken; else the seconds until the next one comes."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return None
            self.refused += 1
            return (1 - self._tokens) / self.rate

    def headers(self, wait: float) -> dict[str, str]:
        """The 429's headers saying to come back in ``wait`` seconds, in this bucket's style."""
        if self.retry_after == "seconds":
            return {"Retry-After": str(max(1, math.ceil(wait)))}
        if self.retry_after == "date":
            # An HTTP date has whole seconds: the next whole second after the token comes.
            return {"Retry-After": email.utils.formatdate(math.ceil(time.time() + wait),
                                                          usegmt=True)}  # fmt: skip
        if self.retry_after == "ms":
            return {"retry-after-ms": str(math.ceil(wait * 1000))}
        return {}


class OpenAIServer:
    """A scriptable OpenAI-compatible server on 127.0.0.1 (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, Handler] = {}
        self._fallback: Handler | None = None
        self._requests: list[Request] = []
        self._handler_errors: list[Exception] = []
        # Chat completions being answered right now (delays included), and the most at once.
        self._in_flight: dict[str, int] = {}
        self._max_in_flight: dict[str, int] = {}
        # Token buckets by model ("" for the one every model shares).
        self._buckets: dict[str, TokenBucket] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> OpenAIServer:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        with self._lock:
            if self._httpd is not None:
                raise RuntimeError("the server is already running")
            httpd = _HTTPServer(self)
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"openai-test-server-{httpd.server_port}",
                daemon=True,
            )
            self._httpd, self._thread = httpd, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and in-flight delays; idempotent."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is None or thread is None:
            return
        with httpd.conn_lock:
            httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        handler_threads = httpd.close_connections()
        thread.join(timeout=_STOP_JOIN_SECONDS)
        deadline = time.monotonic() + _STOP_JOIN_SECONDS
        for handler_thread in handler_threads:
            if handler_thread is not threading.current_thread():
                handler_thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> OpenAIServer:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        httpd = self._httpd
        if httpd is None:
            raise RuntimeError("the server is not running; call start() first")
        return int(httpd.server_port)

    @property
    def url(self) -> str:
        """Base URL for the SDK, ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def azure_endpoint(self) -> str:
        """The Azure OpenAI endpoint it also is, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    # -- scripting -------------------------------------------------------------------------

    def on(self, model: str, reply: Script) -> None:
        """Script ``model``, replacing any earlier script for it.

        ``reply`` is a callable (called with each :class:`Request`), a fixed Reply/str/dict
        (answered to every request), or a sequence of those, consumed one per request in order
        with the last one repeating. To answer with a JSON list, return it from a callable or
        use ``Reply(content=json.dumps(...))``: a list given here is a sequence of replies.
        """
        handler = _compile(reply)
        with self._lock:
            self._scripts[model] = handler

    def on_any(self, reply: Script) -> None:
        """Script every model that has no script of its own."""
        handler = _compile(reply)
        with self._lock:
            self._fallback = handler

    def rate_limit(
        self,
        rate: float,
        burst: float = 1,
        retry_after: RetryAfterStyle = "seconds",
        model: str | None = None,
    ) -> TokenBucket:
        """Allow ``rate`` chat completions a second (``burst`` at once) for ``model``, or
        for every model together; the rest are answered 429 before their script is asked
        (see :data:`RETRY_AFTER_STYLES`). A model's own bucket is asked first, then the
        shared one."""
        bucket = TokenBucket(rate, burst, retry_after)
        with self._lock:
            self._buckets[model or ""] = bucket
        return bucket

    def rate_limited(self, model: str | None = None) -> int:
        """429s sent by the bucket of ``model`` (or the shared one)."""
        with self._lock:
            bucket = self._buckets.get(model or "")
        return bucket.refused if bucket is not None else 0

    # -- inspection ------------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        """Every request received, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def handler_errors(self) -> list[Exception]:
        """Exceptions raised by handlers (each was answered with a 500), in order (a copy)."""
        with self._lock:
            return list(self._handler_errors)

    def calls(self, model: str | None = None) -> int:
        """Chat-completion requests received, for ``model`` or for all models."""
        with self._lock:
            return sum(
                1
                for r in self._requests
                if _is_chat(r.path) and (model is None or r.model == model)
            )

    def in_flight(self, model: str | None = None) -> int:
        """Chat-completion requests being answered now, for ``model`` or for all models."""
        with self._lock:
            if model is None:
                return sum(self._in_flight.values())
            return self._in_flight.get(model, 0)

    def max_in_flight(self, model: str | None = None) -> int:
        """The most chat-completion requests answered at once, for ``model`` (or for all
        models, counted together)."""
        with self._lock:
            return self._max_in_flight.get(model or "", 0)

    def clear_requests(self) -> None:
        """Forget recorded requests and handler errors (scripts are kept)."""
        with self._lock:
            self._requests.clear()
            self._handler_errors.clear()
            self._max_in_flight.clear()

    # -- serving (called from handler threads) -----------------------------------------------

    def _answer(
        self, request: Request, *, body_is_object: bool, stopping: threading.Event
    ) -> _Response | None:
        with self._lock:
            self._requests.append(request)
        path = _normal_path(request.path)
        if path == CHAT_COMPLETIONS_PATH and request.method == "POST":
            return self._chat_completion(request, body_is_object=body_is_object, stopping=stopping)
        azure = AZURE_CHAT_PATH.fullmatch(path)
        if azure is not None and request.method == "POST":
            if "api-version" not in parse_qs(request.query):
                return _error_response(404, "Resource not found", code="404")
            # Azure answers from the deployment the path names, whatever the body's model.
            as_deployed = dataclasses.replace(request, model=unquote(azure["deployment"]))
            return self._chat_completion(as_deployed, body_is_object=body_is_object,
                                         stopping=stopping)  # fmt: skip
        if path == MODELS_PATH and request.method == "GET":
            return _json_response(
                200, {"object": "list", "data": [_model_object(m) for m in self._model_ids()]}
            )
        if path.startswith(MODELS_PATH + "/") and request.method == "GET":
            model_id = path[len(MODELS_PATH) + 1 :]
            if model_id in self._model_ids():
                return _json_response(200, _model_object(model_id))
            return _model_not_found(model_id)
        return _error_response(404, f"Invalid URL ({request.method} {request.path})")

    def _model_ids(self) -> list[str]:
        with self._lock:
            return list(self._scripts)

    def _chat_completion(
        self, request: Request, *, body_is_object: bool, stopping: threading.Event
    ) -> _Response | None:
        if not body_is_object:
            return _error_response(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you"
                " aren't using your HTTP library correctly.)",
            )
        if request.model is None:
            return _error_response(400, "you must provide a model parameter")
        with self._lock:
            handler = self._scripts.get(request.model, self._fallback)
        if handler is None:
            return _model_not_found(request.model)
        refusal = self._refused(request.model)
        if refusal is not None:
            return refusal
        self._count_in_flight(request.model, +1)
        try:
            return self._scripted(handler, request, stopping)
        finally:
            self._count_in_flight(request.model, -1)

    def _refused(self, model: str) -> _Response | None:
        """The 429 of the first bucket (the model's, then the shared one) that has no token."""
        with self._lock:
            buckets = [b for b in (self._buckets.get(model), self._buckets.get("")) if b]
        for bucket in buckets:
            wait = bucket.take()
            if wait is not None:
                return _error_response(429, "Rate limit reached for requests (token bucket)",
                                       headers=bucket.headers(wait))  # fmt: skip
        return None

    def _count_in_flight(self, model: str, change: int) -> None:
        with self._lock:
            self._in_flight[model] = self._in_flight.get(model, 0) + change
            for key, value in (
                (model, self._in_flight[model]),
                ("", sum(self._in_flight.values())),
            ):
                self._max_in_flight[key] = max(self._max_in_flight.get(key, 0), value)

    def _scripted(
        self, handler: Handler, request: Request, stopping: threading.Event
    ) -> _Response | None:
        try:
            reply = _to_reply(handler(request))
        except Exception as exc:
            with self._lock:
                self._handler_errors.append(exc)
            return _error_response(500, str(exc) or type(exc).__name__)
        if reply.delay > 0 and stopping.wait(reply.delay):
            return None  # stopped while waiting: drop the connection unanswered
        return _reply_response(request, reply)


def _client_gone(conn: socket.socket) -> bool:
    """Whether the client closed its side (or the connection broke)."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _normal_path(path: str) -> str:
    return path.rstrip("/") or "/"


def _is_chat(path: str) -> bool:
    normal = _normal_path(path)
    return normal == CHAT_COMPLETIONS_PATH or AZURE_CHAT_PATH.fullmatch(normal) is not None


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "openai-test-server"}


def _model_not_found(model: str) -> _Response:
    return _error_response(404, f"The model `{model}` does not exist", code="model_not_found")


def _reply_response(request: Request, reply: Reply) -> _Response:
    response = _plain_response(request, reply)
    response.fault = reply.fault
    response.trickle_interval = reply.trickle_interval
    response.trickle_bytes = reply.trickle_bytes
    return response


def _plain_response(request: Request, reply: Reply) -> _Response:
    extra = {"x-request-id": f"req_{uuid.uuid4().hex}"}
    extra.update(reply.headers)
    if reply.body is not None:
        headers = _case_insensitive_update({"Content-Type": "application/json"}, extra)
        return _Response(reply.status, reply.body, headers)
    if not 200 <= reply.status < 300:
        response = _error_response(reply.status, reply.error_message)
        response.headers = _case_insensitive_update(response.headers, extra)
        return response

    prompt_tokens = reply.prompt_tokens
    if prompt_tokens is None:
        prompt_tokens = sum(_count_words(_text_of(m.get("content"))) for m in request.messages)
    completion_tokens = reply.completion_tokens
    if completion_tokens is None:
        completion_tokens = _count_words(reply.content)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    common = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "created": int(time.time()),
        "model": request.model,
        "system_fingerprint": None,
    }
    if request.body.get("stream") is True:
        stream_options = request.body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage")
        body = _sse_body(common, reply.content, usage if include_usage else None)
        headers = {"Content-Type": "text/event-stream; charset=utf-8"}
        return _Response(reply.status, body, _case_insensitive_update(headers, extra))

    completion = {
        **common,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage,
    }
    response = _json_response(reply.status, completion)
    response.headers = _case_insensitive_update(response.headers, extra)
    return response


def _sse_body(common: dict[str, Any], content: str | None, usage: dict[str, int] | None) -> bytes:
    def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return {**common, "object": "chat.completion.chunk", "choices": [choice]}

    events = [chunk({"role": "assistant", "content": "" if content is not None else None}, None)]
    for piece in re.findall(r"\s*\S+\s*|\s+", content or ""):
        events.append(chunk({"content": piece}, None))
    events.append(chunk({}, "stop"))
    if usage is not None:
        events.append({**common, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    lines = [f"data: {json.dumps(event)}\n\n" for event in events]
    lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def _case_insensitive_update(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """``base`` updated with ``extra``, an ``extra`` name replacing a same-named ``base`` one."""
    result = dict(base)
    for name, value in extra.items():
        for existing in [k for k in result if k.lower() == name.lower()]:
            del result[existing]
        result[name] = value
    return result


# -- faults by plan ------------------------------------------------------------------------

FAULT_KINDS: tuple[str, ...] = (
    "reset",  # the connection reset before anything is sent
    "hang",  # nothing sent until the client gives up
    "trickle",  # headers, then whitespace a byte at a time, for ever
    "truncate",  # the body cut off half way and the connection closed
    "429",  # rate limited, with Retry-After
    "429-bare",  # rate limited, no Retry-After (the engine backs off on its own)
    "429-storm",  # rate limited, with Retry-After, on this and every later attempt
    "500",
    "503",
    "cut-json",  # 200 with a JSON body cut short (its Content-Length matching)
    "not-openai",  # 200 with JSON that is no chat completion
    "empty-choices",  # 200, a chat completion with no choices
)
"""Every fault a :class:`FaultPlan` draws from."""

FINAL_FAULTS = frozenset({"cut-json", "not-openai", "empty-choices"})
"""Faults the engine does not retry (a 200 it cannot read): the request fails at once.
Every other fault is retried while its allowance lasts (429s have their own)."""

RATE_LIMITS = frozenset({"429", "429-bare", "429-storm"})
"""Faults that are rate limits: their retries spend `--llm-rate-limit-retries`."""


@dataclass(frozen=True)
class Outcome:
    """What a request under a plan comes to, through the engine's retries."""

    answered: bool  # False: an error
    attempts: int  # requests the server receives for it
    faults: tuple[str, ...]  # the fault of each attempt that had one, in order

    @property
    def rate_limited(self) -> int:
        return sum(kind in RATE_LIMITS for kind in self.faults)


@dataclass(frozen=True)
class FaultPlan:
    """Faults drawn by rate from a seed: each attempt of each request (named by a key) has
    its fault, or none, whatever order requests arrive in and however often the run is
    repeated. An attempt is the SDK's ``x-stainless-retry-count`` (0 for the first)."""

    rate: float  # share of attempts with a fault
    seed: int = 0
    # Relative weights of the kinds drawn (default: every kind of FAULT_KINDS alike).
    kinds: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(FAULT_KINDS, 1.0))
    )
    retry_after: str = "0.05"  # the Retry-After of "429" and "429-storm"
    trickle_interval: float = 0.25  # seconds between the bytes of a trickle

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        if not 0 <= self.rate <= 1:
            raise ValueError("rate must be between 0 and 1")

    def fault(self, key: str, attempt: int) -> str | None:
        """The fault of this attempt of the request named ``key``, or None (answered)."""
        drawn = [self._draw(key, n) for n in range(attempt + 1)]
        if "429-storm" in drawn:
            return "429-storm"  # a storm, once begun, lasts
        return drawn[-1]

    def outcome(self, key: str, max_retries: int, rate_limit_retries: int = 10) -> Outcome:
        """Where the engine ends with this request: a 429 spends one of
        ``rate_limit_retries`` (``--llm-rate-limit-retries``), any other retried fault one
        of ``max_retries``; the fault that finds its allowance spent ends it."""
        faults: list[str] = []
        left = {True: rate_limit_retries, False: max_retries}
        attempt = 0
        while True:
            kind = self.fault(key, attempt)
            if kind is None:
                return Outcome(True, attempt + 1, tuple(faults))
            faults.append(kind)
            limited = kind in RATE_LIMITS
            if kind in FINAL_FAULTS or left[limited] == 0:
                return Outcome(False, attempt + 1, tuple(faults))
            left[limited] -= 1
            attempt += 1

    def reply(self, kind: str, answer: Reply) -> Reply:
        """The reply that serves fault ``kind`` (``answer``: what the request would get)."""
        connection: dict[str, Fault] = {"reset": "reset", "hang": "hang", "truncate": "truncate"}
        if kind in connection:
            return Reply(content=answer.content, fault=connection[kind])
        if kind == "trickle":
            return Reply(content=answer.content, fault="trickle",
                         trickle_interval=self.trickle_interval)  # fmt: skip
        if kind in ("429", "429-storm"):
            return Reply(status=429, error_message="Rate limit reached (fault plan)",
                         headers={"Retry-After": self.retry_after})  # fmt: skip
        if kind == "429-bare":
            return Reply(status=429, error_message="Rate limit reached (fault plan)")
        if kind in ("500", "503"):
            return Reply(status=int(kind), error_message=f"fault plan: {kind}")
        if kind == "cut-json":
            whole = json.dumps(
                {
                    "object": "chat.completion",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": answer.content}}
                    ],
                }
            )
            return Reply(body=whole[: len(whole) // 2].encode())  # fmt: skip
        if kind == "not-openai":
            return Reply(body=json.dumps({"result": answer.content, "ok": True}).encode())
        if kind == "empty-choices":
            body = {"id": "chatcmpl-empty", "object": "chat.completion", "created": 0,
                    "model": "fault-plan", "choices": []}  # fmt: skip
            return Reply(body=json.dumps(body).encode())
        raise ValueError(f"unknown fault kind: {kind!r}")

    def _draw(self, key: str, attempt: int) -> str | None:
        if self._uniform(key, attempt, "whether") >= self.rate:
            return None
        total = sum(self.kinds.values())
        point = self._uniform(key, attempt, "which") * total
        for kind, weight in self.kinds.items():
            point -= weight
            if point < 0:
                return kind
        return list(self.kinds)[-1]

    def _uniform(self, key: str, attempt: int, purpose: str) -> float:
        digest = hashlib.sha256(f"{self.seed}\0{key}\0{attempt}\0{purpose}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64


def request_key(request: Request) -> str:
    """The default key of a request in a plan: its model and last user message."""
    return f"{request.model}\0{request.last_user_content}"


class Faulty:
    """A handler that serves each attempt its planned fault, or ``answer``'s reply.

    The attempt is the SDK's ``x-stainless-retry-count``; a client that sends none has its
    requests counted per key instead. ``served`` counts what was sent, by fault kind
    ("answer" for none); ``attempts`` the requests per key.
    """

    def __init__(
        self,
        plan: FaultPlan,
        answer: Handler,
        key: Callable[[Request], str] = request_key,
    ) -> None:
        self.plan = plan
        self._answer = answer
        self._key = key
        self._lock = threading.Lock()
        self.served: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()

    def __call__(self, request: Request) -> Reply:
        key = self._key(request)
        with self._lock:
            arrived = self.attempts[key]
            self.attempts[key] += 1
        header = request.headers.get("x-stainless-retry-count", "")
        attempt = int(header) if header.isdigit() else arrived
        answer = _to_reply(self._answer(request))
        kind = self.plan.fault(key, attempt)
        with self._lock:
            self.served[kind or "answer"] += 1
        return answer if kind is None else self.plan.reply(kind, answer)

    def reset_counts(self) -> None:
        with self._lock:
            self.served.clear()
            self.attempts.clear()
