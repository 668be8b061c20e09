"""Self-test of tests/langsmith_server.py, driven by the real langsmith SDK over real HTTP.

Every test but those about failures also checks that the SDK logged no warning and raised no
Python warning while parsing what the server answered.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import langsmith
import pytest
import requests
from langsmith import schemas
from langsmith._internal._beta_decorator import LangSmithDeprecationWarning
from langsmith._internal._operations import (
    SerializedFeedbackOperation,
    SerializedRunOperation,
    serialize_feedback_dict,
    serialize_run_dict,
)
from langsmith.utils import (
    LangSmithAPIError,
    LangSmithAuthError,
    LangSmithConflictError,
    LangSmithConnectionError,
    LangSmithNotFoundError,
    LangSmithRateLimitError,
)
from urllib3.util import Retry

from tests.langsmith_server import TENANT_ID, LangSmithServer

# Any Python warning (a schema the SDK complains about, a deprecation) fails a test here.
pytestmark = pytest.mark.filterwarnings("error")

KEY = "ls-test-key"

ClientFactory = Callable[..., langsmith.Client]


@pytest.fixture(autouse=True)
def _no_langsmith_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("LANGSMITH_", "LANGCHAIN_")):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _sdk_logs_nothing(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """Tests that do not ask for ``sdk_warnings`` must leave no SDK warning in the log."""
    caplog.set_level(logging.DEBUG, logger="langsmith")
    yield
    if "sdk_warnings" not in request.fixturenames:
        assert sdk_warning_messages(caplog) == []


def sdk_warning_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("langsmith") and r.levelno >= logging.WARNING
    ]


@pytest.fixture
def sdk_warnings(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The SDK's warning log lines so far (asking for this lifts the no-warning check)."""
    return lambda: sdk_warning_messages(caplog)


@pytest.fixture
def server() -> Iterator[LangSmithServer]:
    with LangSmithServer() as srv:
        yield srv
        assert srv.handler_errors == []


@pytest.fixture
def trace_errors() -> list[Exception]:
    """What the SDK passed to ``tracing_error_callback``."""
    return []


@pytest.fixture
def make_client(server: LangSmithServer, trace_errors: list[Exception]) -> Iterator[ClientFactory]:
    """Clients as the plugin makes them, without urllib3 retries (so faults are quick)."""
    clients: list[langsmith.Client] = []

    def make(**options: Any) -> langsmith.Client:
        settings: dict[str, Any] = {
            "api_url": server.url,
            "api_key": KEY,
            "auto_batch_tracing": False,
            "timeout_ms": (1000, 2000),
            "retry_config": Retry(total=0),
            "tracing_error_callback": trace_errors.append,
        }
        settings.update(options)
        client = langsmith.Client(**settings)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.session.close()


@pytest.fixture
def client(make_client: ClientFactory) -> langsmith.Client:
    return make_client()


def run_dict(
    *,
    name: str = "case",
    session_id: object = None,
    session_name: str | None = None,
    run_id: uuid.UUID | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A root run as multipart_ingest / batch_ingest_runs take it."""
    run_id = run_id or uuid.uuid4()
    start = dt.datetime.now(dt.UTC)
    run: dict[str, Any] = {
        "id": run_id,
        "trace_id": run_id,
        "dotted_order": f"{start.strftime('%Y%m%dT%H%M%S%fZ')}{run_id}",
        "name": name,
        "run_type": "chain",
        "inputs": {"review": "fine kettle"},
        "start_time": start,
    }
    if session_id is not None:
        run["session_id"] = session_id
    if session_name is not None:
        run["session_name"] = session_name
    run.update(fields)
    return run


def part_names(body: bytes) -> list[str]:
    return [m.decode() for m in re.findall(rb'name="([^"]+)"', body)]


def calls(server: LangSmithServer, path: str) -> list[int | None]:
    """Statuses answered to requests for ``path`` (query string ignored)."""
    return [r.status for r in server.requests if r.path.split("?")[0] == path]


# -- /info ---------------------------------------------------------------------------------


def test_info_keeps_multipart_on_without_compression_and_needs_no_key(
    server: LangSmithServer, make_client: ClientFactory
) -> None:
    info = make_client(api_key="not-the-key").info
    assert langsmith.utils.is_version_greater_or_equal(info.version, "0.8.10")
    assert info.batch_ingest_config is not None
    assert info.batch_ingest_config["use_multipart_endpoint"] is True
    flags = info.instance_flags or {}
    assert not flags.get("zstd_compression_enabled")
    assert not flags.get("dataset_examples_multipart_enabled")
    (request,) = server.requests
    assert (request.method, request.path, request.status) == ("GET", "/info", 200)
    assert request.headers["x-api-key"] == "not-the-key"


def test_info_can_be_changed_before_the_client_reads_it(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    server.info["version"] = "0.8.0"
    assert client.info.version == "0.8.0"


# -- datasets ------------------------------------------------------------------------------


def test_create_dataset_then_read_it_by_name_and_id(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    created = client.create_dataset("reviews", description="golden", metadata={"suite": "r"})

    stored = server.datasets[str(created.id)]
    assert (stored["name"], stored["description"]) == ("reviews", "golden")
    assert stored["metadata"]["suite"] == "r"
    assert "runtime" in stored["metadata"]  # the SDK adds its runtime to dataset metadata
    by_name = client.read_dataset(dataset_name="reviews")
    by_id = client.read_dataset(dataset_id=created.id)
    assert by_name.id == by_id.id == created.id
    assert by_name.metadata == stored["metadata"]
    assert by_name.example_count == 0
    # Besides its own request, each call looks up the tenant id with GET /sessions?limit=1.
    assert server.paths() == [
        "POST /datasets",
        "GET /sessions",
        "GET /datasets",
        "GET /sessions",
        f"GET /datasets/{created.id}",
        "GET /sessions",
    ]


def test_unknown_dataset_is_not_found_by_name_or_id(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    with pytest.raises(LangSmithNotFoundError, match="Dataset nothing-here not found"):
        client.read_dataset(dataset_name="nothing-here")  # an empty list, answered 200
    with pytest.raises(LangSmithNotFoundError):
        client.read_dataset(dataset_id=uuid.uuid4())  # a 404
    assert [r.status for r in server.requests] == [200, 404]
    assert json.loads(server.requests[0].body or b"null") is None
    assert not client.has_dataset(dataset_name="nothing-here")


def test_dataset_name_taken_answers_409(server: LangSmithServer, client: langsmith.Client) -> None:
    client.create_dataset("reviews")
    with pytest.raises(LangSmithConflictError, match="already exists"):
        client.create_dataset("reviews")
    assert [d["name"] for d in server.datasets.values()] == ["reviews"]
    assert calls(server, "/datasets") == [200, 409]


# -- examples ------------------------------------------------------------------------------


def test_create_examples_as_json_and_list_them_page_by_page(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    dataset = client.create_dataset("reviews")
    ids = [uuid.uuid4() for _ in range(130)]
    response = client.create_examples(
        dataset_id=dataset.id,
        examples=[
            {
                "id": example_id,
                "inputs": {"n": n},
                "reference_outputs": {"double": 2 * n},
                "metadata": {"case": f"c{n}"},
            }
            for n, example_id in enumerate(ids)
        ],
    )

    assert sorted(response["example_ids"]) == sorted(str(i) for i in ids)
    assert server.example_posts == [str(i) for i in ids]
    stored = server.examples[str(ids[7])]
    assert stored["dataset_id"] == str(dataset.id)
    assert (stored["inputs"], stored["outputs"], stored["metadata"]) == (
        {"n": 7},
        {"double": 14},
        {"case": "c7"},
    )
    assert calls(server, "/examples/bulk") == [200]  # JSON, one request

    listed = list(client.list_examples(dataset_id=dataset.id))
    assert [e.id for e in listed] == ids
    assert listed[7].outputs == {"double": 14}
    assert listed[7].metadata == {"case": "c7"}
    assert listed[7].dataset_id == dataset.id
    pages = [r.path for r in server.requests if r.path.startswith("/examples?")]
    assert len(pages) == 2
    assert "offset=0" in pages[0]
    assert "offset=100" in pages[1]
    assert client.read_dataset(dataset_id=dataset.id).example_count == 130


def test_existing_example_id_answers_409_and_nothing_is_stored(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    dataset = client.create_dataset("reviews")
    first, second = uuid.uuid4(), uuid.uuid4()
    client.create_examples(dataset_id=dataset.id, examples=[{"id": first, "inputs": {"n": 1}}])
    with pytest.raises(LangSmithConflictError, match=str(first)):
        client.create_examples(
            dataset_id=dataset.id,
            examples=[{"id": second, "inputs": {"n": 2}}, {"id": first, "inputs": {"n": 3}}],
        )
    assert list(server.examples) == [str(first)]
    assert server.examples[str(first)]["inputs"] == {"n": 1}
    assert server.example_posts == [str(first), str(second), str(first)]


def test_update_examples_changes_only_the_fields_given(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    dataset = client.create_dataset("reviews")
    example_id = uuid.uuid4()
    client.create_examples(
        dataset_id=dataset.id,
        examples=[
            {
                "id": example_id,
                "inputs": {"n": 1},
                "reference_outputs": {"a": 1},
                "metadata": {"v": 1},
            }
        ],
    )
    before = server.examples[str(example_id)]

    result = client.update_examples(
        dataset_id=dataset.id,
        updates=[{"id": example_id, "outputs": {"a": 2}, "metadata": {"v": 2}}],
    )

    after = server.examples[str(example_id)]
    assert (after["inputs"], after["outputs"], after["metadata"]) == ({"n": 1}, {"a": 2}, {"v": 2})
    assert after["modified_at"] >= before["modified_at"]
    assert result["count"] == 1
    assert [r.method for r in server.requests if r.path == "/examples/bulk"] == ["POST", "PATCH"]
    with pytest.raises(LangSmithNotFoundError):
        client.update_examples(dataset_id=dataset.id, updates=[{"id": uuid.uuid4(), "inputs": {}}])
    assert server.examples[str(example_id)] == after


# -- sessions (projects, experiments) ------------------------------------------------------


def test_create_project_then_read_it_by_name_and_id(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    dataset = client.create_dataset("reviews")
    project = client.create_project(
        "reviews-m1",
        reference_dataset_id=dataset.id,
        metadata={"model": "m1"},
        description="an experiment",
    )

    assert project.url == f"http://localhost/o/{TENANT_ID}/projects/p/{project.id}"
    assert project.metadata == {"model": "m1"}
    stored = server.sessions[str(project.id)]
    assert stored["name"] == "reviews-m1"
    assert stored["reference_dataset_id"] == str(dataset.id)
    assert stored["extra"] == {"metadata": {"model": "m1"}}
    assert stored["description"] == "an experiment"
    assert stored["tenant_id"] == TENANT_ID
    by_name = client.read_project(project_name="reviews-m1")
    by_id = client.read_project(project_id=str(project.id), include_stats=True)
    assert by_name.id == by_id.id == project.id
    assert by_name.reference_dataset_id == dataset.id
    assert by_id.run_count == 0
    assert client.read_dataset(dataset_id=dataset.id).session_count == 1


def test_unknown_project_is_not_found_and_a_taken_name_answers_409(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    with pytest.raises(LangSmithNotFoundError, match="Project nowhere not found"):
        client.read_project(project_name="nowhere")
    with pytest.raises(LangSmithNotFoundError):
        client.read_project(project_id=str(uuid.uuid4()))
    assert not client.has_project("nowhere")
    first = client.create_project("taken")
    with pytest.raises(LangSmithConflictError):
        client.create_project("taken")
    again = client.create_project("taken", upsert=True, description="upserted")
    assert again.id == first.id
    assert [s["name"] for s in server.sessions.values()] == ["taken"]
    assert server.sessions[str(first.id)]["description"] == "upserted"


def test_update_project_patches_the_session(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    project = client.create_project("p", metadata={"model": "m1"})
    end = dt.datetime(2030, 1, 2, tzinfo=dt.UTC)
    updated = client.update_project(
        project.id, metadata={"model": "m1", "done": True}, end_time=end
    )
    assert updated.end_time == end
    stored = server.sessions[str(project.id)]
    assert stored["extra"] == {"metadata": {"model": "m1", "done": True}}
    assert stored["name"] == "p"  # a None in the patch changes nothing


# -- runs ----------------------------------------------------------------------------------


def test_multipart_ingest_stores_posts_then_patches(
    server: LangSmithServer, client: langsmith.Client, trace_errors: list[Exception]
) -> None:
    project = client.create_project("exp")
    example_id = uuid.uuid4()
    run = run_dict(
        session_id=project.id,
        reference_example_id=example_id,
        extra={"metadata": {"case": "kettle"}},
    )
    run_id = str(run["id"])

    client.multipart_ingest(create=[dict(run)])
    multipart = [r for r in server.requests if r.path == "/runs/multipart"]
    assert multipart[0].headers["content-type"].startswith("multipart/form-data; boundary=")
    assert part_names(multipart[0].body) == [
        f"post.{run_id}",
        f"post.{run_id}.inputs",
        f"post.{run_id}.extra",
    ]
    end = dt.datetime.now(dt.UTC)
    client.multipart_ingest(
        update=[
            {
                "id": run["id"],
                "trace_id": run["trace_id"],
                "dotted_order": run["dotted_order"],
                "outputs": {"answer": "5 stars"},
                "error": "judge said no",
                "end_time": end,
            }
        ]
    )

    assert part_names(server.requests[-1].body) == [
        f"patch.{run_id}",
        f"patch.{run_id}.outputs",
        f"patch.{run_id}.extra",
        f"patch.{run_id}.error",
    ]
    stored = server.runs[run_id]
    assert stored["session_id"] == str(project.id)
    assert stored["reference_example_id"] == str(example_id)
    assert (stored["trace_id"], stored["dotted_order"]) == (run_id, run["dotted_order"])
    assert (stored["name"], stored["run_type"]) == ("case", "chain")
    assert stored["inputs"] == {"review": "fine kettle"}
    assert stored["outputs"] == {"answer": "5 stars"}
    assert stored["error"] == "judge said no"
    assert stored["end_time"] == end.isoformat()
    assert stored["start_time"] == run["start_time"].isoformat()
    # The SDK puts its runtime (and metadata without the post's) in every patch's extra, and a
    # patch's extra replaces the post's, as the SDK does when it folds a patch into a post.
    assert stored["extra"]["runtime"]["sdk"] == "langsmith-py"
    assert "case" not in stored["extra"]["metadata"]
    assert server.run_posts == [run_id]
    assert calls(server, "/runs/multipart") == [202, 202]
    assert trace_errors == []


def test_session_name_names_a_project_created_when_unknown(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    client.multipart_ingest(
        create=[run_dict(session_name="tracing"), run_dict(session_name="tracing"), run_dict()]
    )
    sessions = {s["name"]: s["id"] for s in server.sessions.values()}
    assert sorted(sessions) == ["default", "tracing"]
    assert [r["session_id"] for r in server.runs.values()] == [
        sessions["tracing"],
        sessions["tracing"],
        sessions["default"],
    ]
    assert client.read_project(project_name="tracing").id == uuid.UUID(sessions["tracing"])


def test_a_run_posted_twice_is_stored_once_and_logged_twice(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    run = run_dict(session_name="exp")
    client.multipart_ingest(create=[{**run, "outputs": {"first": True}}])
    client.multipart_ingest(create=[{**run, "outputs": {"second": True}}])
    run_id = str(run["id"])
    assert list(server.runs) == [run_id]
    assert server.runs[run_id]["outputs"] == {"first": True}
    assert server.run_posts == [run_id, run_id]


def test_multipart_feedback_parts_are_stored_once_per_id(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    """As the plugin sends a batch's scores: feedback.{id} parts beside the runs."""
    project = client.create_project("exp")
    run = run_dict(session_id=project.id)
    run_id = run["id"]
    now = dt.datetime.now(dt.UTC)
    feedback_id = uuid.uuid4()

    def score() -> SerializedFeedbackOperation:
        return serialize_feedback_dict(
            schemas.FeedbackCreate(
                id=feedback_id,
                run_id=run_id,
                trace_id=run_id,
                key="correctness",
                score=0.5,
                value="partly",
                comment="one field wrong",
                session_id=project.id,
                feedback_source=schemas.APIFeedbackSource(metadata={}),
                created_at=now,
                modified_at=now,
            )
        )

    ops: list[SerializedRunOperation | SerializedFeedbackOperation] = [
        serialize_run_dict("post", run),
        score(),
    ]
    client._multipart_ingest_ops(ops)
    client._multipart_ingest_ops([score()])

    assert part_names(server.requests[-1].body) == [f"feedback.{feedback_id}"]
    stored = server.feedback[str(feedback_id)]
    assert (stored["run_id"], stored["trace_id"]) == (str(run_id), str(run_id))
    assert (stored["key"], stored["score"], stored["value"]) == ("correctness", 0.5, "partly")
    assert stored["comment"] == "one field wrong"
    assert stored["session_id"] == str(project.id)
    assert server.feedback_posts == [str(feedback_id), str(feedback_id)]
    assert list(server.runs) == [str(run_id)]
    (listed,) = client.list_feedback(run_ids=[run_id])
    assert (listed.id, listed.score, listed.session_id) == (feedback_id, 0.5, project.id)


def test_batch_ingest_runs_posts_json(server: LangSmithServer, client: langsmith.Client) -> None:
    first, second = run_dict(session_name="exp"), run_dict(session_name="exp")
    client.batch_ingest_runs(
        create=[first, second],
        update=[
            {
                "id": first["id"],
                "trace_id": first["trace_id"],
                "dotted_order": first["dotted_order"],
                "outputs": {"y": 1},
            }
        ],
    )
    (request,) = [r for r in server.requests if r.path == "/runs/batch"]
    body = json.loads(request.body)
    # The SDK folds a patch into the post of the same run before sending.
    assert [r["id"] for r in body["post"]] == [str(first["id"]), str(second["id"])]
    assert body.get("patch", []) == []
    assert server.runs[str(first["id"])]["outputs"] == {"y": 1}
    assert server.runs[str(second["id"])]["inputs"] == {"review": "fine kettle"}
    assert server.run_posts == [str(first["id"]), str(second["id"])]


def test_create_run_and_update_run_without_batching(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    run = run_dict(session_name="exp")
    client.create_run(
        run["name"],
        run["inputs"],
        "chain",
        id=run["id"],
        trace_id=run["trace_id"],
        dotted_order=run["dotted_order"],
        project_name="exp",
        start_time=run["start_time"],
    )
    client.update_run(
        run["id"],
        outputs={"answer": 42},
        trace_id=run["trace_id"],
        dotted_order=run["dotted_order"],
    )
    run_id = str(run["id"])
    assert server.paths() == ["POST /runs", f"PATCH /runs/{run_id}"]
    assert [r.status for r in server.requests] == [202, 202]
    stored = server.runs[run_id]
    assert stored["outputs"] == {"answer": 42}
    assert stored["inputs"] == {"review": "fine kettle"}
    assert stored["name"] == "case"  # the patch's name=None changes nothing
    assert stored["session_id"] == next(iter(server.sessions))
    assert server.run_posts == [run_id]


def test_list_runs_follows_the_cursor(server: LangSmithServer, client: langsmith.Client) -> None:
    project = client.create_project("exp")
    other = client.create_project("other")
    runs = [run_dict(session_id=project.id, outputs={"n": n}) for n in range(120)]
    client.multipart_ingest(create=[*runs, run_dict(session_id=other.id)])

    with pytest.warns(LangSmithDeprecationWarning, match="list_runs"):
        listed = list(client.list_runs(project_id=project.id))

    assert [r.id for r in listed] == [r["id"] for r in runs]
    assert listed[5].outputs == {"n": 5}
    assert listed[5].session_id == project.id
    assert listed[5].trace_id == runs[5]["id"]
    assert listed[5].start_time == runs[5]["start_time"]
    queries = [json.loads(r.body) for r in server.requests if r.path == "/runs/query"]
    assert [q.get("cursor") for q in queries] == [None, "100"]
    assert queries[0]["session"] == [str(project.id)]
    with pytest.warns(LangSmithDeprecationWarning):
        (only,) = client.list_runs(run_ids=[runs[3]["id"]])
    assert only.outputs == {"n": 3}


# -- feedback ------------------------------------------------------------------------------


def test_create_feedback_and_list_it(server: LangSmithServer, client: langsmith.Client) -> None:
    project = client.create_project("exp")
    run = run_dict(session_id=project.id)
    client.multipart_ingest(create=[run])
    feedback_id = uuid.uuid4()
    for _ in range(2):
        client.create_feedback(
            run["id"],
            "correctness",
            score=1,
            value="right",
            comment="all fields",
            feedback_id=feedback_id,
            session_id=project.id,
            stop_after_attempt=1,
        )

    stored = server.feedback[str(feedback_id)]
    assert stored["run_id"] == str(run["id"])
    assert (stored["key"], stored["score"], stored["value"]) == ("correctness", 1, "right")
    assert stored["comment"] == "all fields"
    assert stored["session_id"] == str(project.id)
    assert server.feedback_posts == [str(feedback_id)] * 2
    assert calls(server, "/feedback") == [200, 200]
    (listed,) = client.list_feedback(run_ids=[run["id"]])
    assert (listed.id, listed.key, listed.score, listed.value) == (
        feedback_id,
        "correctness",
        1,
        "right",
    )
    assert listed.trace_id == run["id"]
    assert list(client.list_feedback(run_ids=[uuid.uuid4()])) == []


# -- the API key, recorded requests, unknown routes, lifecycle -----------------------------


def test_a_wrong_key_answers_401_and_every_request_is_recorded(
    server: LangSmithServer, make_client: ClientFactory
) -> None:
    wrong = make_client(api_key="ls-wrong")
    with pytest.raises(LangSmithAuthError):
        wrong.create_dataset("reviews")
    (request,) = server.requests
    assert (request.method, request.path, request.status) == ("POST", "/datasets", 401)
    assert request.headers["x-api-key"] == "ls-wrong"
    assert json.loads(request.body)["name"] == "reviews"
    assert server.datasets == {}
    response = requests.get(f"{server.url}/datasets", timeout=2)
    assert (response.status_code, response.json()) == (401, {"detail": "Invalid token"})


def test_no_key_check_when_api_key_is_none(make_client: ClientFactory) -> None:
    with LangSmithServer(api_key=None) as open_server:
        make_client(api_url=open_server.url, api_key="anything").create_dataset("reviews")
        assert [d["name"] for d in open_server.datasets.values()] == ["reviews"]


def test_unknown_routes_answer_404_or_405(server: LangSmithServer) -> None:
    headers = {"x-api-key": KEY}
    missing = requests.get(f"{server.url}/nowhere", headers=headers, timeout=2)
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    wrong_method = requests.delete(f"{server.url}/datasets", headers=headers, timeout=2)
    assert wrong_method.status_code == 405
    bad_id = requests.get(f"{server.url}/datasets/not-a-uuid", headers=headers, timeout=2)
    assert bad_id.status_code == 422


def test_start_stop_lifecycle() -> None:
    server = LangSmithServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    with server:
        assert server.url == f"http://127.0.0.1:{server.port}"
    server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = server.url


# -- faults --------------------------------------------------------------------------------


def test_fault_500_on_multipart_reaches_the_tracing_callback(
    server: LangSmithServer,
    client: langsmith.Client,
    trace_errors: list[Exception],
    sdk_warnings: Callable[[], list[str]],
) -> None:
    server.fault(500, paths=["/runs/multipart"])
    run = run_dict(session_name="exp")
    client.multipart_ingest(create=[dict(run)])

    assert calls(server, "/runs/multipart") == [500, 500, 500]  # the SDK's own three attempts
    assert [type(e) for e in trace_errors] == [LangSmithAPIError]
    assert [m.split(":")[0] for m in sdk_warnings()] == ["Failed to multipart ingest runs"]
    assert server.runs == {}
    assert server.run_posts == []

    server.clear_faults()
    client.multipart_ingest(create=[dict(run)])
    assert list(server.runs) == [str(run["id"])]


def test_fault_count_fails_the_next_requests_only(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    server.fault(503, paths=["/datasets"], methods=["POST"], count=2)
    for _ in range(2):
        with pytest.raises(langsmith.utils.LangSmithError, match="503"):
            client.create_dataset("reviews")
    created = client.create_dataset("reviews")
    assert list(server.datasets) == [str(created.id)]
    assert calls(server, "/datasets") == [503, 503, 200]


def test_fault_on_a_path_prefix_and_method(
    server: LangSmithServer, client: langsmith.Client
) -> None:
    dataset = client.create_dataset("reviews")
    example_id = uuid.uuid4()
    server.fault(401, paths=["/examples/*"], methods=["PATCH"])
    client.create_examples(dataset_id=dataset.id, examples=[{"id": example_id, "inputs": {}}])
    with pytest.raises(LangSmithAuthError):
        client.update_examples(
            dataset_id=dataset.id, updates=[{"id": example_id, "inputs": {"a": 1}}]
        )
    assert server.examples[str(example_id)]["inputs"] == {}


def test_fault_404_on_multipart_falls_back_to_batch(
    server: LangSmithServer, client: langsmith.Client, trace_errors: list[Exception]
) -> None:
    server.fault(404, paths=["/runs/multipart"])
    run = run_dict(session_name="exp")
    now = dt.datetime.now(dt.UTC)
    lost_score = serialize_feedback_dict(
        schemas.FeedbackCreate(
            id=uuid.uuid4(),
            run_id=run["id"],
            trace_id=run["id"],
            key="correctness",
            score=1,
            feedback_source=schemas.APIFeedbackSource(metadata={}),
            created_at=now,
            modified_at=now,
        )
    )
    client._multipart_ingest_ops([serialize_run_dict("post", dict(run)), lost_score])

    # The batch fallback reads /info for its size limit; feedback has no batch form: dropped.
    assert server.paths() == ["POST /runs/multipart", "GET /info", "POST /runs/batch"]
    assert [r.status for r in server.requests] == [404, 200, 202]
    assert client._multipart_disabled
    assert list(server.runs) == [str(run["id"])]
    assert server.feedback == {}
    assert trace_errors == []


def test_fault_409_on_multipart_counts_as_done(
    server: LangSmithServer, client: langsmith.Client, trace_errors: list[Exception]
) -> None:
    server.fault(409, paths=["/runs/multipart"], count=1)
    client.multipart_ingest(create=[run_dict(session_name="exp")])
    assert calls(server, "/runs/multipart") == [409]
    assert trace_errors == []


def test_fault_429_with_retry_after(
    server: LangSmithServer, make_client: ClientFactory, sdk_warnings: Callable[[], list[str]]
) -> None:
    server.fault(429, paths=["/feedback"], count=1, retry_after=0)
    once = make_client()
    with pytest.raises(LangSmithRateLimitError):
        once.create_feedback(
            uuid.uuid4(), "k", score=1, session_id=uuid.uuid4(), stop_after_attempt=1
        )
    assert calls(server, "/feedback") == [429]
    # create_feedback logs any failure at ERROR, with the traceback.
    assert sdk_warnings() == ["Error creating feedback"]

    server.fault(429, paths=["/feedback"], count=1, retry_after=0)
    retrying = make_client(
        retry_config=Retry(
            total=1, status_forcelist=[429], allowed_methods=None, respect_retry_after_header=True
        )
    )
    retrying.create_feedback(uuid.uuid4(), "k", score=1, session_id=uuid.uuid4())
    assert calls(server, "/feedback") == [429, 429, 200]
    assert len(server.feedback) == 1

    server.fault(429, count=1, retry_after=7)
    limited = requests.get(f"{server.url}/feedback", timeout=2)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")


def test_failing_info_leaves_the_sdk_defaults(
    server: LangSmithServer, client: langsmith.Client, sdk_warnings: Callable[[], list[str]]
) -> None:
    server.fault(500, paths=["/info"], count=1)
    assert client.info == schemas.LangSmithInfo()
    (logged,) = sdk_warnings()
    assert logged.startswith(f"Failed to get info from {server.url}: LangSmithAPIError")


def test_hang_times_out_the_client_and_stop_cuts_it(make_client: ClientFactory) -> None:
    server = LangSmithServer().start()
    try:
        server.fault(hang=True, paths=["/datasets"])
        quick = make_client(api_url=server.url, timeout_ms=(1000, 200))
        with pytest.raises(LangSmithConnectionError, match="Read timed out"):
            quick.read_dataset(dataset_name="reviews")
        assert [(r.path, r.status) for r in server.requests] == [
            ("/datasets?limit=1&name=reviews", None)
        ]

        patient = make_client(api_url=server.url, timeout_ms=(1000, 30_000))
        outcome: list[BaseException] = []

        def wait_forever() -> None:
            try:
                patient.read_dataset(dataset_name="reviews")
            except BaseException as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=wait_forever)
        waiter.start()
        deadline = time.monotonic() + 2
        while len(server.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [r.status for r in server.requests] == [None, None]
        started = time.monotonic()
    finally:
        server.stop()
    assert time.monotonic() - started < 1.5
    waiter.join(2)
    assert [type(e) for e in outcome] == [LangSmithConnectionError]


def test_refusing_url_means_langsmith_down(
    make_client: ClientFactory, trace_errors: list[Exception], sdk_warnings: Callable[[], list[str]]
) -> None:
    down = make_client(api_url=LangSmithServer.refusing())
    with pytest.raises(LangSmithConnectionError):
        down.read_dataset(dataset_name="reviews")
    down.multipart_ingest(create=[run_dict(session_name="exp")])
    assert [type(e) for e in trace_errors] == [LangSmithConnectionError]
    assert len(sdk_warnings()) == 1


def test_a_dotted_order_not_ending_with_the_run_answers_422(
    server: LangSmithServer,
    client: langsmith.Client,
    trace_errors: list[Exception],
    sdk_warnings: Callable[[], list[str]],
) -> None:
    good, bad = run_dict(session_name="exp"), run_dict(session_name="exp")
    bad["dotted_order"] = good["dotted_order"]
    client.multipart_ingest(create=[good, bad])
    assert calls(server, "/runs/multipart") == [422]
    assert server.runs == {}  # all or nothing
    assert len(trace_errors) == 1
    assert "dotted_order" in str(trace_errors[0])
    assert len(sdk_warnings()) == 1
