"""A LangSmith-compatible HTTP server for tests.

Tests start it on 127.0.0.1 (an ephemeral port) and point the real ``langsmith`` SDK at it, so
the whole HTTP path (headers, status codes, multipart bodies, the SDK's fallbacks) is exercised
and what arrived is stored for assertions::

    with LangSmithServer() as server:
        client = langsmith.Client(
            api_url=server.url, api_key="ls-test-key", auto_batch_tracing=False
        )
        dataset = client.create_dataset("reviews")
        assert server.datasets[str(dataset.id)]["name"] == "reviews"

Request and response shapes follow the SDK's source (langsmith 0.15). Endpoints, with the
SDK method that calls each:

* ``GET /info`` (answered without checking the key: LangSmith serves it to anyone):
  ``Client.info``. It answers :attr:`LangSmithServer.info`: by default multipart ingestion
  on, JSON example uploads (no ``dataset_examples_multipart_enabled``), no zstd compression.
* ``GET /datasets`` (``name``, ``name_contains``, ``id``, ``offset``, ``limit``):
  ``read_dataset(dataset_name=)``, which turns an empty list into LangSmithNotFoundError;
  ``list_datasets``. ``GET /datasets/{id}``: ``read_dataset(dataset_id=)``, 404 when unknown.
  ``POST /datasets``: ``create_dataset``, 409 when the name exists.
* ``GET /examples`` (``dataset``, ``id``, ``metadata``, ``offset``, ``limit``):
  ``list_examples``. ``POST /examples/bulk``: ``create_examples``, 409 when an id exists.
  ``PATCH /examples/bulk``: ``update_examples``, 404 when an id is unknown.
* ``GET /sessions`` (``name``, ``name_contains``, ``reference_dataset``, ``id``, ``offset``,
  ``limit``, ``include_stats``): ``read_project(project_name=)`` (empty list: not found), and
  the tenant-id lookup the SDK makes from ``create_dataset``, ``read_dataset`` and
  ``list_examples``. ``GET|PATCH /sessions/{id}``: ``read_project(project_id=)``,
  ``update_project``. ``POST /sessions``: ``create_project``, 409 when the name exists
  (unless ``?upsert=true``).
* ``POST /runs/multipart``: ``multipart_ingest`` and the SDK's background sender (parts
  ``post.{id}``, ``post.{id}.inputs`` / ``.outputs`` / ``.extra`` / ``.error`` / ``.events`` /
  ``.serialized``, the same for ``patch.{id}``, ``attachment.{id}.{name}``,
  ``feedback.{id}``). ``POST /runs/batch``: ``batch_ingest_runs`` and the SDK's fallback when
  multipart answers 404. ``POST /runs`` and ``PATCH /runs/{id}``: ``create_run`` and
  ``update_run`` without auto batching. ``POST /runs/query``: ``list_runs`` (cursor paging).
* ``POST /feedback``: ``create_feedback``. ``GET /feedback`` (``run``, ``key``, ``session``,
  ``offset``, ``limit``): ``list_feedback``.
* anything else: 404 ``{"detail": "Not Found"}`` (405 for a known path with another method).

As the service does: a dataset or session name that exists, or an example id, answers 409
``{"detail": ...}``; a run or feedback id sent again is stored once (every id received is
logged in ``run_posts`` / ``feedback_posts``); a run's ``session_name`` names a project,
created when unknown (no name and no id: the ``default`` project); ids that are not UUIDs,
posts without ``trace_id``, ``dotted_order``, ``name`` or ``run_type`` (or with a
``dotted_order`` that does not end with the run and start with the trace) answer 422; and
every request but ``GET /info`` needs ``x-api-key`` equal to ``api_key`` (else 401
``{"detail": "Invalid token"}``). Filters it cannot evaluate (``filter``, ``query``,
``as_of``, ``splits``...) answer 400 rather than being ignored.

:meth:`LangSmithServer.fault` makes requests fail or hang; :meth:`LangSmithServer.refusing`
gives a URL where nothing listens. Standard library only.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, TypeAlias, TypeVar
from urllib.parse import parse_qs, urlsplit

__all__ = ["DEFAULT_API_KEY", "DEFAULT_INFO", "TENANT_ID", "LangSmithServer", "Recorded"]

DEFAULT_API_KEY = "ls-test-key"
TENANT_ID = "00000000-0000-4000-8000-00000000cafe"
"""The tenant every session and dataset belongs to (``TracerSession.url`` needs one)."""

DEFAULT_INFO: dict[str, Any] = {
    # >= 0.8.10: the SDK's background sender then puts feedback in multipart requests too.
    "version": "0.10.0",
    "license_expiration_time": None,
    "batch_ingest_config": {
        "use_multipart_endpoint": True,
        "scale_up_qsize_trigger": 200,
        "scale_up_nthreads_limit": 32,
        "scale_down_nempty_trigger": 4,
        "size_limit": 100,
        "size_limit_bytes": 20_971_520,
    },
    "instance_flags": {
        # Off: examples go as JSON to /examples/bulk, not as multipart to /v1/platform/...
        "dataset_examples_multipart_enabled": False,
        # Off: the SDK sends plain (not zstd-compressed) multipart bodies.
        "zstd_compression_enabled": False,
    },
}
"""What ``GET /info`` answers by default (each server gets its own deep copy)."""

# How long stop() waits, in total, for handler threads still running.
_STOP_JOIN_SECONDS = 1.0
_MAX_PAGE = 100

# A dotted_order segment: the run's start time (%Y%m%dT%H%M%S%fZ) then its id.
_SEGMENT = re.compile(r"^\d{8}T\d{6,12}Z([0-9a-fA-F-]{36})$")
_RUN_FIELD_PARTS = ("inputs", "outputs", "events", "extra", "error", "serialized")
_RUN_ID_FIELDS = ("trace_id", "parent_run_id", "reference_example_id", "session_id")


@dataclass(frozen=True)
class Recorded:
    """A request as it arrived, and what it was answered."""

    method: str
    path: str
    """URL path with the query string, as sent."""
    headers: dict[str, str]
    """Every header, names lower-cased (repeated headers joined with ``", "``)."""
    body: bytes
    status: int | None
    """The status answered; ``None`` for a request left hanging (see ``fault(hang=True)``)."""


@dataclass
class _Fault:
    status: int
    paths: tuple[str, ...] | None
    methods: tuple[str, ...] | None
    remaining: int | None
    hang: bool
    retry_after: int | None

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.paths is None:
            return True
        return any(
            path.startswith(p[:-1]) if p.endswith("*") else path == _normal_path(p)
            for p in self.paths
        )


class _HTTPError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _json_response(status: int, value: object, headers: dict[str, str] | None = None) -> _Response:
    merged = {"Content-Type": "application/json"}
    merged.update(headers or {})
    return _Response(status, json.dumps(value).encode(), merged)


@dataclass(frozen=True)
class _Call:
    """One request, as a route handler sees it."""

    method: str
    path: str
    params: dict[str, str]  # from the route's pattern
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise _HTTPError(422, f"The request body is not JSON: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        value = self.json()
        if not isinstance(value, dict):
            raise _HTTPError(422, "The request body must be a JSON object")
        return value

    def one(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def flag(self, name: str) -> bool:
        return (self.one(name) or "").lower() in ("true", "1", "yes")

    def page(self) -> tuple[int, int]:
        """``offset`` and ``limit`` (at most 100, as the service allows)."""
        offset, limit = self.one("offset"), self.one("limit")
        try:
            start = int(offset) if offset is not None else 0
            size = int(limit) if limit is not None else _MAX_PAGE
        except ValueError:
            raise _HTTPError(422, "offset and limit must be integers") from None
        if start < 0 or not 1 <= size <= _MAX_PAGE:
            raise _HTTPError(422, f"offset must be >= 0 and limit 1 to {_MAX_PAGE}")
        return start, size

    def reject(self, *names: str) -> None:
        """400 for filters this server does not evaluate (rather than ignoring them)."""
        for name in names:
            if self.query.get(name):
                raise _HTTPError(400, f"The test server does not support the {name!r} filter")


_T = TypeVar("_T")
_Handler: TypeAlias = Callable[["LangSmithServer", _Call], "tuple[int, Any]"]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _uuid(value: object, what: str) -> str:
    """The canonical string form of a UUID, or 422."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise _HTTPError(422, f"{what} is not a valid UUID: {value!r}") from None


def _optional_uuid(value: object, what: str) -> str | None:
    return None if value is None else _uuid(value, what)


def _normal_path(path: str) -> str:
    return path.rstrip("/") or "/"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _matches_subset(value: object, wanted: dict[str, Any]) -> bool:
    return isinstance(value, dict) and all(
        key in value and value[key] == item for key, item in wanted.items()
    )


def _run_status(run: dict[str, Any]) -> str:
    if run.get("error"):
        return "error"
    return "success" if run.get("end_time") else "pending"


def _page(items: list[dict[str, Any]], start: int, size: int) -> list[dict[str, Any]]:
    return items[start : start + size]


def _parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str, bytes]]:
    """``(name, content type, payload)`` of each part of a multipart/form-data body."""
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise _HTTPError(422, f"Expected multipart/form-data with a boundary, not {content_type!r}")
    delimiter = b"\r\n--" + boundary.encode()
    chunks = (b"\r\n" + body).split(delimiter)
    if len(chunks) < 2 or not chunks[-1].startswith(b"--"):
        raise _HTTPError(422, "The multipart body has no closing boundary")
    parts: list[tuple[str, str, bytes]] = []
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n"):
            raise _HTTPError(422, "Malformed multipart boundary line")
        head, separator, payload = chunk[2:].partition(b"\r\n\r\n")
        if not separator:
            raise _HTTPError(422, "A multipart part has no header/body separator")
        part_headers = Message()
        for line in head.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                part_headers[name.strip()] = value.strip()
        part_name = part_headers.get_param("name", header="content-disposition")
        if not isinstance(part_name, str):
            raise _HTTPError(422, f"A multipart part has no name: {head!r}")
        parts.append((part_name, part_headers.get("Content-Type", ""), payload))
    return parts


def _check_dotted_order(run: dict[str, Any]) -> None:
    dotted = run.get("dotted_order")
    if dotted is None:
        return
    segments = str(dotted).split(".")
    ids = []
    for segment in segments:
        found = _SEGMENT.match(segment)
        if found is None:
            raise _HTTPError(422, f"Invalid dotted_order {dotted!r} for run {run['id']}")
        ids.append(_uuid(found.group(1), "dotted_order id"))
    if ids[-1] != run["id"]:
        raise _HTTPError(422, f"dotted_order {dotted!r} does not end with run {run['id']}")
    if run.get("trace_id") is not None and ids[0] != run["trace_id"]:
        raise _HTTPError(
            422, f"dotted_order {dotted!r} does not start with trace {run['trace_id']}"
        )


def _normal_run(run: dict[str, Any], run_id: object, *, post: bool, strict: bool) -> dict[str, Any]:
    """A run post or patch with canonical ids, checked as the service checks it (else 422).

    ``strict``: trace_id and dotted_order are required (the batch and multipart endpoints).
    """
    normal = dict(run)
    normal["id"] = _uuid(run_id, "run id")
    for name in _RUN_ID_FIELDS:
        if normal.get(name) is not None:
            normal[name] = _uuid(normal[name], name)
    if post:
        missing = [name for name in ("name", "run_type") if not normal.get(name)]
        if strict:
            missing += [n for n in ("trace_id", "dotted_order") if not normal.get(n)]
        if missing:
            raise _HTTPError(422, f"Run {normal['id']} lacks {', '.join(missing)}")
    _check_dotted_order(normal)
    return normal


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, owner: LangSmithServer) -> None:
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
        pass  # quiet: tests read server.requests instead

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
        response = self.server.owner._answer(
            self.command, self.path, headers, raw, stopping=self.server.stopping
        )
        if response is None or self.server.stopping.is_set():
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)


class LangSmithServer:
    """A LangSmith-compatible server on 127.0.0.1 (see the module docstring).

    ``api_key``: the only ``x-api-key`` accepted (``None``: no check). What arrived is read
    through the properties below: each returns a deep copy, safe to read while requests
    come in; dicts are keyed by id (canonical UUID strings) in arrival order.
    """

    def __init__(self, api_key: str | None = DEFAULT_API_KEY) -> None:
        self.api_key = api_key
        self.info: dict[str, Any] = copy.deepcopy(DEFAULT_INFO)
        """What ``GET /info`` answers; change it before a client first reads ``/info``."""
        self._lock = threading.Lock()
        self._datasets: dict[str, dict[str, Any]] = {}
        self._examples: dict[str, dict[str, Any]] = {}
        self._sessions: dict[str, dict[str, Any]] = {}
        self._runs: dict[str, dict[str, Any]] = {}
        self._posted: set[str] = set()  # runs received in a post (not only in patches)
        self._feedback: dict[str, dict[str, Any]] = {}
        self._run_posts: list[str] = []
        self._feedback_posts: list[str] = []
        self._example_posts: list[str] = []
        self._requests: list[Recorded] = []
        self._handler_errors: list[Exception] = []
        self._faults: list[_Fault] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LangSmithServer:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        with self._lock:
            if self._httpd is not None:
                raise RuntimeError("the server is already running")
            httpd = _HTTPServer(self)
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"langsmith-test-server-{httpd.server_port}",
                daemon=True,
            )
            self._httpd, self._thread = httpd, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; cut open connections, hanging requests included; idempotent.
        Returns within about a second."""
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

    def __enter__(self) -> LangSmithServer:
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
        """The SDK's ``api_url``: ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def refusing() -> str:
        """A URL where nothing listens (a port bound, then closed): LangSmith down."""
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return f"http://127.0.0.1:{port}"

    # -- faults ----------------------------------------------------------------------------

    def fault(
        self,
        status: int = 500,
        *,
        paths: Iterable[str] | None = None,
        methods: Iterable[str] | None = None,
        count: int | None = None,
        hang: bool = False,
        retry_after: int | None = None,
    ) -> None:
        """Answer ``status`` (body ``{"detail": ...}``) instead of serving, or with ``hang``
        read the request and never answer until the server stops.

        ``paths``: request paths it applies to (``"/runs/multipart"``; a trailing ``*`` is a
        prefix: ``"/runs/*"``), all when ``None``; ``methods`` likewise (``"PATCH"``).
        ``count``: the next N matching requests, every one when ``None``. ``retry_after``:
        whole seconds sent as a ``Retry-After`` header (urllib3 rejects fractions; the SDK's
        own loop sleeps 30 s on a 429 without one, when it retries).

        Faults apply before the key check, and to ``/info`` too. Several faults are tried in
        the order given, the first matching one taking the request.
        """
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (or None for every request)")
        if isinstance(paths, str) or isinstance(methods, str):
            raise TypeError("paths and methods are collections of strings, not one string")
        with self._lock:
            self._faults.append(
                _Fault(
                    status=status,
                    paths=None if paths is None else tuple(paths),
                    methods=None if methods is None else tuple(m.upper() for m in methods),
                    remaining=count,
                    hang=hang,
                    retry_after=retry_after,
                )
            )

    def clear_faults(self) -> None:
        """Serve normally again (requests already hanging keep hanging until ``stop()``)."""
        with self._lock:
            self._faults.clear()

    # -- what arrived ----------------------------------------------------------------------

    @property
    def datasets(self) -> dict[str, dict[str, Any]]:
        """id → id, name, description, metadata, data_type, created_at, modified_at..."""
        return self._copy(self._datasets)

    @property
    def examples(self) -> dict[str, dict[str, Any]]:
        """id → id, dataset_id, inputs, outputs, metadata, created_at, modified_at..."""
        return self._copy(self._examples)

    @property
    def sessions(self) -> dict[str, dict[str, Any]]:
        """Projects and experiments: id → id, name, description, extra (its ``metadata``
        is the project's metadata), reference_dataset_id, tenant_id, start_time, end_time."""
        return self._copy(self._sessions)

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        """id → the run as received: its post's fields, then each patch's top-level fields
        over them (``None`` values in a patch change nothing; a patch's ``extra`` replaces
        the post's whole ``extra``, as the SDK does when it folds a patch into a post),
        ``session_id`` resolved from ``session_name``; attachments as
        ``{"attachments": {name: (content type, bytes)}}``. A run only patched so far holds
        the patch's fields (it is left out of ``/runs/query`` until its post arrives)."""
        return self._copy(self._runs)

    @property
    def feedback(self) -> dict[str, dict[str, Any]]:
        """id → run_id, key, score, value, comment, session_id, trace_id, created_at..."""
        return self._copy(self._feedback)

    @property
    def run_posts(self) -> list[str]:
        """Every run id received in a post, by any endpoint, duplicates included."""
        return self._copy(self._run_posts)

    @property
    def feedback_posts(self) -> list[str]:
        """Every feedback id received (POST /feedback or a multipart part), duplicates
        included."""
        return self._copy(self._feedback_posts)

    @property
    def example_posts(self) -> list[str]:
        """Every example id received by POST /examples/bulk, rejected ones (409) included."""
        return self._copy(self._example_posts)

    @property
    def requests(self) -> list[Recorded]:
        """Every request, in the order answered (a hanging one when it started hanging)."""
        with self._lock:
            return list(self._requests)

    @property
    def handler_errors(self) -> list[Exception]:
        """Exceptions raised by this server's own code (each answered 500): server bugs."""
        with self._lock:
            return list(self._handler_errors)

    def paths(self, method: str | None = None) -> list[str]:
        """``"METHOD /path"`` (no query) of every request so far, or only of ``method``."""
        return [
            f"{r.method} {urlsplit(r.path).path}"
            for r in self.requests
            if method is None or r.method == method
        ]

    def clear_requests(self) -> None:
        """Forget recorded requests and handler errors (stored data is kept)."""
        with self._lock:
            self._requests.clear()
            self._handler_errors.clear()

    def _copy(self, value: _T) -> _T:
        with self._lock:
            return copy.deepcopy(value)

    # -- serving (called from handler threads) ---------------------------------------------

    def _answer(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        *,
        stopping: threading.Event,
    ) -> _Response | None:
        split = urlsplit(target)
        path = _normal_path(split.path)
        with self._lock:
            fault = self._take_fault(method, path)
            if fault is not None and fault.hang:
                self._requests.append(Recorded(method, target, headers, body, None))
        if fault is not None and fault.hang:
            stopping.wait()
            return None  # the connection is dropped unanswered
        try:
            if fault is not None:
                extra = {}
                if fault.retry_after is not None:
                    extra["Retry-After"] = str(fault.retry_after)
                raise _HTTPError(
                    fault.status, f"Injected fault: {fault.status} {_phrase(fault.status)}", extra
                )
            key_needed = self.api_key is not None and path != "/info"
            if key_needed and headers.get("x-api-key") != self.api_key:
                raise _HTTPError(401, "Invalid token")
            handler, params = _route(method, path)
            call = _Call(
                method, path, params, parse_qs(split.query, keep_blank_values=True), headers, body
            )
            with self._lock:  # answers may be stored dicts: serialize them under the lock too
                status, value = handler(self, call)
                response = _json_response(status, value)
        except _HTTPError as exc:
            response = _json_response(exc.status, {"detail": exc.detail}, exc.headers)
        except Exception as exc:
            with self._lock:
                self._handler_errors.append(exc)
            response = _json_response(500, {"detail": f"Test server error: {exc!r}"})
        with self._lock:
            self._requests.append(Recorded(method, target, headers, body, response.status))
        return response

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    # -- endpoints (called with self._lock held) -------------------------------------------

    def _get_info(self, call: _Call) -> tuple[int, Any]:
        return 200, self.info

    # datasets

    def _dataset_view(self, dataset: dict[str, Any]) -> dict[str, Any]:
        examples = [e for e in self._examples.values() if e["dataset_id"] == dataset["id"]]
        sessions = [
            s for s in self._sessions.values() if s["reference_dataset_id"] == dataset["id"]
        ]
        return {
            **dataset,
            "example_count": len(examples),
            "session_count": len(sessions),
            "last_session_start_time": max((s["start_time"] for s in sessions), default=None),
        }

    def _list_datasets(self, call: _Call) -> tuple[int, Any]:
        call.reject("data_type", "metadata", "tag_value_id")
        start, size = call.page()
        ids = {_uuid(i, "id") for i in call.query.get("id", [])}
        name, contains = call.one("name"), call.one("name_contains")
        found = [
            self._dataset_view(d)
            for d in self._datasets.values()
            if (name is None or d["name"] == name)
            and (contains is None or contains.lower() in d["name"].lower())
            and (not ids or d["id"] in ids)
        ]
        return 200, _page(found, start, size)

    def _read_dataset(self, call: _Call) -> tuple[int, Any]:
        dataset = self._datasets.get(_uuid(call.params["id"], "dataset id"))
        if dataset is None:
            raise _HTTPError(404, "Dataset not found")
        return 200, self._dataset_view(dataset)

    def _create_dataset(self, call: _Call) -> tuple[int, Any]:
        data = call.json_object()
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise _HTTPError(422, "A dataset needs a name")
        if any(d["name"] == name for d in self._datasets.values()):
            raise _HTTPError(409, f"Dataset with name {name!r} already exists")
        dataset_id = _uuid(data.get("id") or uuid.uuid4(), "id")
        if dataset_id in self._datasets:
            raise _HTTPError(409, f"Dataset {dataset_id} already exists")
        extra = data.get("extra")
        if not isinstance(extra, dict):
            extra = {}
        now = _now()
        dataset = {
            "id": dataset_id,
            "name": name,
            "description": data.get("description"),
            "data_type": data.get("data_type") or "kv",
            # The SDK sends metadata as extra.metadata; the service answers it as metadata.
            "metadata": data.get("metadata") or extra.get("metadata"),
            "inputs_schema": data.get("inputs_schema_definition"),
            "outputs_schema": data.get("outputs_schema_definition"),
            "transformations": data.get("transformations"),
            "tenant_id": TENANT_ID,
            "created_at": now,
            "modified_at": now,
        }
        self._datasets[dataset_id] = dataset
        return 200, self._dataset_view(dataset)

    # examples

    def _list_examples(self, call: _Call) -> tuple[int, Any]:
        call.reject("as_of", "splits", "filter", "full_text_contains")
        start, size = call.page()
        dataset = call.one("dataset")
        dataset_id = None if dataset is None else _uuid(dataset, "dataset")
        ids = {_uuid(i, "id") for i in call.query.get("id", [])}
        wanted_metadata: dict[str, Any] | None = None
        if call.one("metadata") is not None:
            try:
                wanted_metadata = json.loads(call.one("metadata") or "")
            except ValueError:
                raise _HTTPError(422, "metadata must be a JSON object") from None
            if not isinstance(wanted_metadata, dict):
                raise _HTTPError(422, "metadata must be a JSON object")
        found = [
            e
            for e in self._examples.values()
            if (dataset_id is None or e["dataset_id"] == dataset_id)
            and (not ids or e["id"] in ids)
            and (wanted_metadata is None or _matches_subset(e["metadata"], wanted_metadata))
        ]
        return 200, _page(found, start, size)

    def _create_examples(self, call: _Call) -> tuple[int, Any]:
        items = call.json()
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise _HTTPError(422, "The body must be a JSON list of examples")
        example_ids = [_uuid(item.get("id") or uuid.uuid4(), "example id") for item in items]
        self._example_posts.extend(example_ids)
        new: list[dict[str, Any]] = []
        for example_id, item in zip(example_ids, items, strict=True):
            dataset_id = _uuid(item.get("dataset_id"), "dataset_id")
            if dataset_id not in self._datasets:
                raise _HTTPError(404, f"Dataset {dataset_id} not found")
            if example_id in self._examples or any(e["id"] == example_id for e in new):
                raise _HTTPError(409, f"Example {example_id} already exists")
            created = item.get("created_at") or _now()
            example = {
                "id": example_id,
                "dataset_id": dataset_id,
                "inputs": item.get("inputs") or {},
                "outputs": item.get("outputs"),
                "metadata": item.get("metadata"),
                "source_run_id": _optional_uuid(item.get("source_run_id"), "source_run_id"),
                "created_at": created,
                "modified_at": created,
            }
            if item.get("split") is not None:
                example["split"] = item["split"]
            new.append(example)
        for example in new:  # all or nothing
            self._examples[example["id"]] = example
        return 200, new

    def _update_examples(self, call: _Call) -> tuple[int, Any]:
        items = call.json()
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise _HTTPError(422, "The body must be a JSON list of example updates")
        updates: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for item in items:
            example_id = _uuid(item.get("id"), "example id")
            example = self._examples.get(example_id)
            if example is None:
                raise _HTTPError(404, f"Example {example_id} not found")
            changes = {
                k: item[k]
                for k in ("inputs", "outputs", "metadata", "split")
                if item.get(k) is not None
            }
            if item.get("dataset_id") is not None:
                changes["dataset_id"] = _uuid(item["dataset_id"], "dataset_id")
                if changes["dataset_id"] not in self._datasets:
                    raise _HTTPError(404, f"Dataset {changes['dataset_id']} not found")
            updates.append((example, changes))
        now = _now()
        for example, changes in updates:  # all or nothing
            example.update(changes)
            example["modified_at"] = now
        ids = [example["id"] for example, _changes in updates]
        return 200, {
            "message": f"{len(ids)} examples updated",
            "count": len(ids),
            "example_ids": ids,
        }

    # sessions (projects, experiments)

    def _session_view(self, session: dict[str, Any], stats: bool) -> dict[str, Any]:
        if not stats:
            return dict(session)
        runs = [r for r in self._runs.values() if r.get("session_id") == session["id"]]
        return {
            **session,
            "run_count": len(runs),
            "last_run_start_time": max((str(r.get("start_time")) for r in runs), default=None),
            "error_rate": (sum(1 for r in runs if r.get("error")) / len(runs)) if runs else None,
        }

    def _list_sessions(self, call: _Call) -> tuple[int, Any]:
        call.reject("filter", "tag_value_id", "metadata")
        start, size = call.page()
        ids = {_uuid(i, "id") for i in call.query.get("id", [])}
        datasets = {_uuid(i, "reference_dataset") for i in call.query.get("reference_dataset", [])}
        name, contains = call.one("name"), call.one("name_contains")
        found = [
            self._session_view(s, call.flag("include_stats"))
            for s in self._sessions.values()
            if (name is None or s["name"] == name)
            and (contains is None or contains.lower() in s["name"].lower())
            and (not ids or s["id"] in ids)
            and (not datasets or s["reference_dataset_id"] in datasets)
        ]
        return 200, _page(found, start, size)

    def _read_session(self, call: _Call) -> tuple[int, Any]:
        session = self._sessions.get(_uuid(call.params["id"], "session id"))
        if session is None:
            raise _HTTPError(404, "Session not found")
        return 200, self._session_view(session, call.flag("include_stats"))

    def _create_session(self, call: _Call) -> tuple[int, Any]:
        data = call.json_object()
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise _HTTPError(422, "A session needs a name")
        same_name = [s for s in self._sessions.values() if s["name"] == name]
        if same_name:
            if not call.flag("upsert"):
                raise _HTTPError(409, f"Session with name {name!r} already exists")
            session = same_name[0]
            for key in ("description", "extra", "end_time"):
                if data.get(key) is not None:
                    session[key] = data[key]
            return 200, dict(session)
        session_id = _uuid(data.get("id") or uuid.uuid4(), "id")
        if session_id in self._sessions:
            raise _HTTPError(409, f"Session {session_id} already exists")
        return 200, dict(self._new_session(name, data, session_id))

    def _new_session(
        self, name: str, data: dict[str, Any] | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        data = data or {}
        reference = _optional_uuid(data.get("reference_dataset_id"), "reference_dataset_id")
        if reference is not None and reference not in self._datasets:
            raise _HTTPError(404, f"Dataset {reference} not found")
        session: dict[str, Any] = {
            "id": session_id or str(uuid.uuid4()),
            "name": name,
            "description": data.get("description"),
            "extra": data.get("extra") if isinstance(data.get("extra"), dict) else {},
            "reference_dataset_id": reference,
            "tenant_id": TENANT_ID,
            "start_time": data.get("start_time") or _now(),
            "end_time": data.get("end_time"),
        }
        self._sessions[session["id"]] = session
        return session

    def _update_session(self, call: _Call) -> tuple[int, Any]:
        session = self._sessions.get(_uuid(call.params["id"], "session id"))
        if session is None:
            raise _HTTPError(404, "Session not found")
        data = call.json_object()
        name = data.get("name")
        if name is not None and any(
            s["name"] == name and s is not session for s in self._sessions.values()
        ):
            raise _HTTPError(409, f"Session with name {name!r} already exists")
        for key in ("name", "description", "extra", "end_time"):
            if data.get(key) is not None:
                session[key] = data[key]
        return 200, dict(session)

    # runs

    def _session_for(self, run: dict[str, Any]) -> str:
        """The run's session id: given, or the session named (created when unknown)."""
        if run.get("session_id") is not None:
            return str(run["session_id"])
        name = run.get("session_name") or "default"
        for session in self._sessions.values():
            if session["name"] == name:
                return str(session["id"])
        return str(self._new_session(str(name))["id"])

    def _store_post(self, run: dict[str, Any]) -> None:
        run_id = run["id"]
        self._run_posts.append(run_id)
        if run_id in self._posted:
            return  # the service deduplicates by id: the first post stays
        self._posted.add(run_id)
        run = {**run, "session_id": self._session_for(run)}
        earlier_patch = self._runs.get(run_id)
        if earlier_patch is not None:
            run.update(earlier_patch)
        self._runs[run_id] = run

    def _store_patch(self, patch: dict[str, Any]) -> None:
        stored = self._runs.setdefault(patch["id"], {"id": patch["id"]})
        stored.update({k: v for k, v in patch.items() if v is not None})

    def _create_run(self, call: _Call) -> tuple[int, Any]:
        data = call.json_object()
        run_id = data.get("id") or uuid.uuid4()
        run = _normal_run(data, run_id, post=True, strict=False)
        run.setdefault("trace_id", run["id"])
        if not run.get("dotted_order") and run["trace_id"] == run["id"]:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
            run["dotted_order"] = f"{stamp}{run['id']}"
        run.setdefault("start_time", _now())
        self._store_post(run)
        return 202, {}

    def _update_run(self, call: _Call) -> tuple[int, Any]:
        patch = _normal_run(call.json_object(), call.params["id"], post=False, strict=False)
        self._store_patch(patch)
        return 202, {}

    def _batch(self, call: _Call) -> tuple[int, Any]:
        data = call.json_object()
        unknown = set(data) - {"post", "patch"}
        if unknown:
            raise _HTTPError(422, f"Unknown batch keys: {sorted(unknown)}")
        ops: dict[str, list[dict[str, Any]]] = {}
        for kind in ("post", "patch"):
            items = data.get(kind) or []
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise _HTTPError(422, f"{kind} must be a list of runs")
            ops[kind] = [
                _normal_run(i, i.get("id"), post=kind == "post", strict=True) for i in items
            ]
        for run in ops["post"]:
            self._store_post(run)
        for patch in ops["patch"]:
            self._store_patch(patch)
        return 202, {}

    def _multipart(self, call: _Call) -> tuple[int, Any]:
        if call.headers.get("content-encoding"):
            raise _HTTPError(415, "The test server takes no compressed bodies")
        parts = _parse_multipart(call.headers.get("content-type", ""), call.body)
        ops: dict[str, dict[str, dict[str, Any]]] = {"post": {}, "patch": {}}
        feedback: list[dict[str, Any]] = []
        attachments: list[tuple[str, str, str, bytes]] = []
        for name, content_type, payload in parts:
            kind, _, rest = name.partition(".")
            if kind == "attachment":
                run_id, _, attachment = rest.partition(".")
                attachments.append((_uuid(run_id, name), attachment, content_type, payload))
                continue
            try:
                value = json.loads(payload)
            except ValueError:
                raise _HTTPError(422, f"Part {name!r} is not JSON") from None
            if kind == "feedback":
                if not isinstance(value, dict):
                    raise _HTTPError(422, f"Part {name!r} must be a JSON object")
                feedback.append(self._normal_feedback({**value, "id": rest}))
            elif kind in ops:
                run_id, _, field_name = rest.partition(".")
                op = ops[kind].setdefault(run_id, {})
                if not field_name:
                    if not isinstance(value, dict):
                        raise _HTTPError(422, f"Part {name!r} must be a JSON object")
                    for key, item in value.items():
                        op.setdefault(key, item)
                elif field_name in _RUN_FIELD_PARTS:
                    op[field_name] = value
                else:
                    raise _HTTPError(422, f"Unknown part {name!r}")
            else:
                raise _HTTPError(422, f"Unknown part {name!r}")
        checked = {
            kind: [
                _normal_run(op, run_id, post=kind == "post", strict=True)
                for run_id, op in by_id.items()
            ]
            for kind, by_id in ops.items()
        }
        for run in checked["post"]:  # everything checked: now store it all
            self._store_post(run)
        for patch in checked["patch"]:
            self._store_patch(patch)
        for run_id, attachment, content_type, payload in attachments:
            stored = self._runs.setdefault(run_id, {"id": run_id})
            stored.setdefault("attachments", {})[attachment] = (content_type, payload)
        for item in feedback:
            self._store_feedback(item)
        return 202, {}

    def _run_view(self, run: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
        computed = {
            "status": _run_status(run),
            "app_path": (
                f"/o/{TENANT_ID}/projects/p/{run.get('session_id')}/r/{run['id']}"
                f"?trace_id={run.get('trace_id')}"
            ),
            "feedback_stats": self._feedback_stats(run["id"]),
        }
        view = {**computed, **run}
        view.pop("attachments", None)  # the SDK passes attachments= itself
        view.pop("session_name", None)
        if select is None:
            return view
        keep = {"id", "name", "run_type", "start_time", "trace_id", *select}
        return {k: v for k, v in view.items() if k in keep}

    def _feedback_stats(self, run_id: str) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        for item in self._feedback.values():
            if item.get("run_id") != run_id:
                continue
            entry = stats.setdefault(item["key"], {"n": 0, "avg": None, "values": {}})
            entry["n"] += 1
            score = item.get("score")
            if isinstance(score, (int, float)):
                scores = entry.setdefault("_scores", [])
                scores.append(float(score))
                entry["avg"] = sum(scores) / len(scores)
            if isinstance(item.get("value"), str):
                entry["values"][item["value"]] = entry["values"].get(item["value"], 0) + 1
        for entry in stats.values():
            entry.pop("_scores", None)
        return stats

    def _query_runs(self, call: _Call) -> tuple[int, Any]:
        data = call.json_object() if call.body else {}
        for name in ("filter", "trace_filter", "tree_filter", "query", "start_time"):
            if data.get(name) is not None:
                raise _HTTPError(400, f"The test server does not support the {name!r} filter")

        def ids(name: str) -> set[str] | None:
            value = data.get(name)
            if value is None:
                return None
            return {_uuid(v, name) for v in (value if isinstance(value, list) else [value])}

        sessions, run_ids, traces = ids("session"), ids("id"), ids("trace")
        examples, parents = ids("reference_example"), ids("parent_run")
        limit = data.get("limit")
        size = min(limit, _MAX_PAGE) if isinstance(limit, int) and limit > 0 else _MAX_PAGE
        try:
            start = int(data.get("cursor") or 0)
        except (TypeError, ValueError):
            raise _HTTPError(422, f"Invalid cursor {data.get('cursor')!r}") from None
        select = data.get("select")
        if select is not None and not (
            isinstance(select, list) and all(isinstance(s, str) for s in select)
        ):
            raise _HTTPError(422, "select must be a list of field names")

        def keep(run: dict[str, Any]) -> bool:
            checks = (
                (sessions, "session_id"),
                (run_ids, "id"),
                (traces, "trace_id"),
                (examples, "reference_example_id"),
                (parents, "parent_run_id"),
            )
            if any(wanted is not None and run.get(key) not in wanted for wanted, key in checks):
                return False
            if data.get("run_type") is not None and run.get("run_type") != data["run_type"]:
                return False
            if data.get("is_root") is not None and (
                (run.get("parent_run_id") is None) != bool(data["is_root"])
            ):
                return False
            return data.get("error") is None or bool(run.get("error")) == bool(data["error"])

        found = [r for i, r in self._runs.items() if i in self._posted and keep(r)]
        page = [self._run_view(r, select) for r in found[start : start + size]]
        following = str(start + size) if start + size < len(found) else None
        return 200, {"runs": page, "cursors": {"next": following, "prev": None}}

    # feedback

    def _normal_feedback(self, data: dict[str, Any]) -> dict[str, Any]:
        key = data.get("key")
        if not isinstance(key, str) or not key:
            raise _HTTPError(422, "Feedback needs a key")
        normal = dict(data)
        normal["id"] = _uuid(data.get("id") or uuid.uuid4(), "feedback id")
        for name in ("run_id", "trace_id", "session_id"):
            normal[name] = _optional_uuid(data.get(name), name)
        if normal["run_id"] is None and normal["session_id"] is None:
            raise _HTTPError(422, "Feedback needs a run_id or a session_id")
        return normal

    def _store_feedback(self, item: dict[str, Any]) -> dict[str, Any]:
        self._feedback_posts.append(item["id"])
        existing = self._feedback.get(item["id"])
        if existing is not None:
            return existing  # the service deduplicates by id: the first stays
        run = self._runs.get(item["run_id"]) if item["run_id"] else None
        if run is not None:
            item["trace_id"] = item["trace_id"] or run.get("trace_id")
            item["session_id"] = item["session_id"] or run.get("session_id")
        now = _now()
        item["created_at"] = item.get("created_at") or now
        item["modified_at"] = now
        self._feedback[item["id"]] = item
        return item

    def _create_feedback(self, call: _Call) -> tuple[int, Any]:
        return 200, self._store_feedback(self._normal_feedback(call.json_object()))

    def _list_feedback(self, call: _Call) -> tuple[int, Any]:
        call.reject("source", "user", "has_comment", "has_score", "level")
        start, size = call.page()
        runs = {_uuid(i, "run") for i in call.query.get("run", [])}
        sessions = {_uuid(i, "session") for i in call.query.get("session", [])}
        keys = set(call.query.get("key", []))
        found = [
            f
            for f in self._feedback.values()
            if (not runs or f["run_id"] in runs)
            and (not sessions or f["session_id"] in sessions)
            and (not keys or f["key"] in keys)
        ]
        return 200, _page(found, start, size)


_ROUTES: list[tuple[str, re.Pattern[str], _Handler]] = [
    (method, re.compile(f"^{pattern}$"), handler)
    for method, pattern, handler in (
        ("GET", r"/info", LangSmithServer._get_info),
        ("GET", r"/datasets", LangSmithServer._list_datasets),
        ("POST", r"/datasets", LangSmithServer._create_dataset),
        ("GET", r"/datasets/(?P<id>[^/]+)", LangSmithServer._read_dataset),
        ("GET", r"/examples", LangSmithServer._list_examples),
        ("POST", r"/examples/bulk", LangSmithServer._create_examples),
        ("PATCH", r"/examples/bulk", LangSmithServer._update_examples),
        ("GET", r"/sessions", LangSmithServer._list_sessions),
        ("POST", r"/sessions", LangSmithServer._create_session),
        ("GET", r"/sessions/(?P<id>[^/]+)", LangSmithServer._read_session),
        ("PATCH", r"/sessions/(?P<id>[^/]+)", LangSmithServer._update_session),
        ("POST", r"/runs/multipart", LangSmithServer._multipart),
        ("POST", r"/runs/batch", LangSmithServer._batch),
        ("POST", r"/runs/query", LangSmithServer._query_runs),
        ("POST", r"/runs", LangSmithServer._create_run),
        ("PATCH", r"/runs/(?P<id>(?!multipart$|batch$|query$)[^/]+)", LangSmithServer._update_run),
        ("GET", r"/feedback", LangSmithServer._list_feedback),
        ("POST", r"/feedback", LangSmithServer._create_feedback),
    )
]


def _route(method: str, path: str) -> tuple[_Handler, dict[str, str]]:
    path_known = False
    for route_method, pattern, handler in _ROUTES:
        found = pattern.match(path)
        if found is None:
            continue
        if route_method == method:
            return handler, found.groupdict()
        path_known = True
    if path_known:
        raise _HTTPError(405, "Method Not Allowed")
    raise _HTTPError(404, "Not Found")
