"""A LangSmith-compatible HTTP server for tests: what the ``langsmith`` SDK calls to sync a
dataset, create experiments, ingest runs and send feedback, stored so tests can assert
on what arrived. Request and response shapes follow the SDK's source (0.15)::

    with LangSmithServer(api_key="k") as server:
        client = langsmith.Client(api_url=server.url, api_key="k")
        client.create_dataset("reviews")
        assert [d["name"] for d in server.datasets.values()] == ["reviews"]

Endpoints: ``GET /info``; ``GET|POST /datasets``, ``GET /datasets/{id}``;
``GET /examples``, ``POST|PATCH /examples/bulk``; ``GET|POST /sessions``,
``GET|PATCH /sessions/{id}``; ``POST /runs/multipart``, ``POST /runs/batch`` (the SDK's
fallback when multipart answers 404), ``POST /runs``, ``PATCH /runs/{id}``,
``POST /runs/query``; ``GET|POST /feedback``.

As the service does: a dataset or session name that exists, or an example id, answers
409; a run or feedback id sent again is stored once (and counted in ``run_posts`` /
``feedback_posts``, which log every id received); a wrong ``x-api-key`` answers 401.
``fault()`` makes requests fail or hang. Standard library only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

TENANT = "00000000-0000-4000-8000-00000000cafe"
INFO = {
    "version": "0.10.50",
    "batch_ingest_config": {
        "use_multipart_endpoint": True,
        "scale_up_qsize_trigger": 1000,
        "scale_up_nthreads_limit": 16,
        "scale_down_nempty_trigger": 4,
        "size_limit": 100,
        "size_limit_bytes": 20_971_520,
    },
    "instance_flags": {},  # no multipart example uploads: examples go as JSON
}


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Fault:
    status: int | None  # answered instead; None with hang
    paths: tuple[str, ...] | None  # path prefixes it applies to; None: all
    count: int | None  # requests left to fail; None: all
    hang: bool
    after: int  # matching requests still to answer normally first


@dataclass
class _State:
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    feedback: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_posts: list[str] = field(default_factory=list)
    feedback_posts: list[str] = field(default_factory=list)
    example_posts: list[str] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)


class HTTPError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class LangSmithServer:
    def __init__(self, api_key: str | None = "ls-test-key") -> None:
        self.api_key = api_key
        self._state = _State()
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._released = threading.Event()  # set on stop: hanging requests give up
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> LangSmithServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    # What arrived (copies, safe to read while requests come in).

    def _copy(self, name: str) -> Any:
        with self._lock:
            value = getattr(self._state, name)
            return dict(value) if isinstance(value, dict) else list(value)

    datasets = property(lambda self: self._copy("datasets"))
    examples = property(lambda self: self._copy("examples"))
    sessions = property(lambda self: self._copy("sessions"))
    runs = property(lambda self: self._copy("runs"))
    feedback = property(lambda self: self._copy("feedback"))
    run_posts = property(lambda self: self._copy("run_posts"))
    feedback_posts = property(lambda self: self._copy("feedback_posts"))
    example_posts = property(lambda self: self._copy("example_posts"))
    requests = property(lambda self: self._copy("requests"))

    # Faults.

    def fault(
        self,
        status: int | None = 500,
        *,
        paths: tuple[str, ...] | None = None,
        count: int | None = None,
        hang: bool = False,
        after: int = 0,
    ) -> None:
        """Answer ``status`` (or never answer, with ``hang``) to requests whose path starts
        with one of ``paths`` (all when None), for the next ``count`` (all when None), once
        ``after`` of them have been answered normally."""
        with self._lock:
            self._faults.append(Fault(status, paths, count, hang, after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.paths is None or path.startswith(fault.paths):
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    # The endpoints.

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        parts = urlsplit(target)
        path, query = parts.path.rstrip("/"), parse_qs(parts.query)
        if self.api_key is not None and headers.get("x-api-key") != self.api_key:
            raise HTTPError(401, "Invalid token")
        route = (method, path.split("/")[1] if path.count("/") >= 1 else "")
        if path == "/info":
            return INFO
        if path == "/datasets" and method == "GET":
            return self._list(
                "datasets", query, lambda d: d["name"] in query.get("name", [d["name"]])
            )
        if path.startswith("/datasets/") and method == "GET":
            return self._get("datasets", path.split("/")[2])
        if path == "/datasets" and method == "POST":
            return self._create_dataset(json.loads(body))
        if path == "/examples" and method == "GET":
            return self._list(
                "examples", query, lambda e: e["dataset_id"] in query.get("dataset", [])
            )
        if path == "/examples/bulk" and method == "POST":
            return self._create_examples(json.loads(body))
        if path == "/examples/bulk" and method == "PATCH":
            return self._update_examples(json.loads(body))
        if path == "/sessions" and method == "GET":
            return self._list(
                "sessions", query, lambda s: s["name"] in query.get("name", [s["name"]])
            )
        if path.startswith("/sessions/") and method == "GET":
            return self._get("sessions", path.split("/")[2])
        if path.startswith("/sessions/") and method == "PATCH":
            with self._lock:
                session = self._state.sessions.get(path.split("/")[2])
                if session is None:
                    raise HTTPError(404, f"session {path} not found")
                session.update(json.loads(body))
                return session
        if path == "/sessions" and method == "POST":
            return self._create_session(json.loads(body))
        if path == "/runs/multipart" and method == "POST":
            return self._multipart(headers.get("content-type", ""), body)
        if path == "/runs/batch" and method == "POST":
            batch = json.loads(body)
            for run in batch.get("post", []):
                self._post_run(run)
            for run in batch.get("patch", []):
                self._patch_run(run)
            return {}
        if path == "/runs" and method == "POST":
            self._post_run(json.loads(body))
            return {}
        if path.startswith("/runs/") and method == "PATCH" and path != "/runs/query":
            self._patch_run({**json.loads(body), "id": path.split("/")[2]})
            return {}
        if path == "/runs/query" and method == "POST":
            wanted = set(json.loads(body).get("session") or [])
            with self._lock:
                found = [r for r in self._state.runs.values() if r.get("session_id") in wanted]
            return {"runs": found, "cursors": {"next": None}}
        if path == "/feedback" and method == "POST":
            self._post_feedback(json.loads(body))
            return {}
        if path == "/feedback" and method == "GET":
            return self._list("feedback", query, lambda f: f["run_id"] in query.get("run", []))
        raise HTTPError(404, f"no route for {route}: {method} {path}")

    def _list(self, name: str, query: dict[str, list[str]], keep: Any) -> list[dict[str, Any]]:
        offset = int(query.get("offset", ["0"])[0])
        limit = int(query.get("limit", ["100"])[0])
        with self._lock:
            found = [item for item in getattr(self._state, name).values() if keep(item)]
        return found[offset : offset + limit]

    def _get(self, name: str, key: str) -> dict[str, Any]:
        with self._lock:
            item = getattr(self._state, name).get(key)
        if item is None:
            raise HTTPError(404, f"{name} {key} not found")
        return item

    def _create_dataset(self, data: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if any(d["name"] == data["name"] for d in self._state.datasets.values()):
                raise HTTPError(409, f"Dataset {data['name']} already exists")
            dataset = {
                "id": str(data.get("id") or uuid.uuid4()),
                "name": data["name"],
                "description": data.get("description"),
                "data_type": data.get("data_type", "kv"),
                "metadata": data.get("metadata") or (data.get("extra") or {}).get("metadata"),
                "created_at": _now(),
                "modified_at": _now(),
                "tenant_id": TENANT,
            }
            self._state.datasets[dataset["id"]] = dataset
            return dataset

    def _create_examples(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._lock:
            for item in items:
                if str(item.get("id")) in self._state.examples:
                    raise HTTPError(409, f"Example {item['id']} already exists")
            created = []
            for item in items:
                example = {
                    "id": str(item.get("id") or uuid.uuid4()),
                    "dataset_id": str(item["dataset_id"]),
                    "inputs": item.get("inputs"),
                    "outputs": item.get("outputs"),
                    "metadata": item.get("metadata"),
                    "created_at": _now(),
                    "modified_at": _now(),
                }
                self._state.examples[example["id"]] = example
                self._state.example_posts.append(example["id"])
                created.append(example)
            return created

    def _update_examples(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            for item in items:
                example = self._state.examples.get(str(item["id"]))
                if example is None:
                    raise HTTPError(404, f"Example {item['id']} not found")
                for key in ("inputs", "outputs", "metadata", "dataset_id"):
                    if key in item:
                        example[key] = item[key]
                example["modified_at"] = _now()
        return {"message": f"{len(items)} examples updated", "count": len(items)}

    def _create_session(self, data: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if any(s["name"] == data["name"] for s in self._state.sessions.values()):
                raise HTTPError(409, f"Session {data['name']} already exists")
            return self._new_session(data)

    def _new_session(self, data: dict[str, Any]) -> dict[str, Any]:
        session = {
            "id": str(data.get("id") or uuid.uuid4()),
            "name": data["name"],
            "description": data.get("description"),
            "extra": data.get("extra") or {},
            "reference_dataset_id": data.get("reference_dataset_id"),
            "start_time": data.get("start_time") or _now(),
            "tenant_id": TENANT,
        }
        self._state.sessions[session["id"]] = session
        return session

    def _post_run(self, run: dict[str, Any]) -> None:
        run_id = str(run["id"])
        with self._lock:
            self._state.run_posts.append(run_id)
            if run_id in self._state.runs:
                return  # the service keeps the first: a run id is stored once
            name = run.pop("session_name", None)
            if run.get("session_id") is None and name is not None:
                found = [s for s in self._state.sessions.values() if s["name"] == name]
                run["session_id"] = (
                    found[0]["id"] if found else self._new_session({"name": name})["id"]
                )
            self._state.runs[run_id] = {**run, "id": run_id}

    def _patch_run(self, run: dict[str, Any]) -> None:
        with self._lock:
            stored = self._state.runs.setdefault(str(run["id"]), {"id": str(run["id"])})
            stored.update({k: v for k, v in run.items() if v is not None})

    def _post_feedback(self, data: dict[str, Any]) -> None:
        feedback_id = str(data.get("id") or uuid.uuid4())
        with self._lock:
            self._state.feedback_posts.append(feedback_id)
            self._state.feedback.setdefault(feedback_id, {
                **data, "id": feedback_id, "created_at": data.get("created_at") or _now(),
                "modified_at": _now(), "trace_id": data.get("trace_id") or data.get("run_id"),
            })  # fmt: skip

    def _multipart(self, content_type: str, body: bytes) -> dict[str, Any]:
        """``post.{id}``, ``post.{id}.inputs`` (and outputs, extra, error...), ``patch.{id}``,
        ``feedback.{id}``: each part a JSON document, as the SDK serializes them."""
        boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
        ops: dict[tuple[str, str], dict[str, Any]] = {}
        for part in body.split(b"--" + boundary)[1:-1]:
            head, _, payload = part.strip(b"\r\n").partition(b"\r\n\r\n")
            found = re.search(rb'name="([^"]+)"', head)
            assert found is not None, head
            kind, run_id, *field_name = found.group(1).decode().split(".", 2)
            op = ops.setdefault((kind, run_id), {})
            value = json.loads(payload or b"null")
            if field_name:
                op[field_name[0]] = value
            else:
                op.update(value)
        for (kind, run_id), op in ops.items():
            if kind == "post":
                self._post_run({**op, "id": run_id})
            elif kind == "patch":
                self._patch_run({**op, "id": run_id})
            elif kind == "feedback":
                self._post_feedback({**op, "id": run_id})
        return {}


def _handler(server: LangSmithServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read what was stored instead

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer = 200, None
            fault = server._take_fault(urlsplit(self.path).path)
            if fault is not None and fault.hang:
                server._released.wait()  # until the server stops; then the connection drops
                self.close_connection = True
                return
            try:
                if fault is not None and fault.status is not None:
                    raise HTTPError(fault.status, f"injected fault {fault.status}")
                answer = server.handle(self.command, self.path, headers, body)
            except HTTPError as exc:
                status, answer = exc.status, {"detail": str(exc)}
            with server._lock:
                server._state.requests.append(
                    Recorded(self.command, self.path, headers, body, status)
                )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

    return Handler


def closed_port_url() -> str:
    """A URL where nothing listens: LangSmith down."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
