"""Every request of the run, concurrently: the response cache, limits, budget and progress.

pytest runs items one after another. The engine runs beside it, in a thread with its own
event loop: once collection is done, every selected item's request starts (replayed from
the cache where the record mode allows, otherwise sent through the SDK's async client
under the global and per-model limits), and each item, when pytest reaches it, waits
only for its own answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import math
import queue
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_llmeval.engine import client
from pytest_llmeval.engine.budget import Budget, estimate_cost, estimate_tokens
from pytest_llmeval.engine.cache import ResponseCache
from pytest_llmeval.engine.client import (
    CallError,
    Completion,
    LLMRequest,
    Retry,
    redact,
    redacted,
)
from pytest_llmeval.engine.limits import AdaptiveLimit
from pytest_llmeval.engine.share import RunShare

if TYPE_CHECKING:
    import openai

    from pytest_llmeval.models import ModelSpec

T = TypeVar("T")
# One recorded answer: the question's digest, and its model, folder, name and asking.
Asked = tuple[str, str, str, str, int, bool]

# How often a waiting item redraws the progress line, and polls for another worker's answer.
TICK_S = 0.25
POLL_S = 0.05


class _Elsewhere:
    """The outcome of a request another xdist worker claimed: read from the run share."""


ELSEWHERE = _Elsewhere()


@dataclass
class Pending:
    """A started request: its future answer, and a note about the cache for the item."""

    request: LLMRequest
    future: Future[Completion | _Elsewhere]
    notice: str = ""


@dataclass
class Counts:
    total: int = 0
    done: int = 0
    errors: int = 0
    spent: float = 0.0


class Progress:
    """Per model counts, updated from both threads, read by the progress line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, Counts] = {}

    def add(self, model: str, **changes: float) -> None:
        with self._lock:
            counts = self._models.setdefault(model, Counts())
            for name, change in changes.items():
                setattr(counts, name, getattr(counts, name) + change)

    def snapshot(self) -> dict[str, Counts]:
        with self._lock:
            return {name: dataclasses.replace(c) for name, c in self._models.items()}


@dataclass
class PlanRow:
    """What a dry run says about one model."""

    model: str
    requests: int = 0
    recorded: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = 0.0

    @property
    def to_call(self) -> int:
        return self.requests - self.recorded


class Recorder:
    """Writes answers to the cache in a thread of its own, in batches: whatever has
    arrived since the last batch is written at once, and the requests waiting for those
    writes are woken together. One hand-off a batch, where a thread pool would take one
    an answer (and several threads writing at once only contend for the interpreter)."""

    def __init__(self, store: Callable[[LLMRequest, Completion], None]) -> None:
        self._store = store
        self._jobs: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def record(self, request: LLMRequest, completion: Completion) -> asyncio.Future[None]:
        """From the engine's loop: a future done once the answer is written."""
        loop = asyncio.get_running_loop()
        if self._thread is None:
            # A daemon, as the engine's thread: an interrupted run must be able to exit.
            self._thread = threading.Thread(target=self._serve, name="llmeval-recorder",
                                            args=(loop,), daemon=True)  # fmt: skip
            self._thread.start()
        written = loop.create_future()
        self._jobs.put(_Write(request, completion, written))
        return written

    def close(self) -> None:
        """Write what is queued, then stop (before the engine's loop closes)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        stopping = False
        while not stopping:
            batch = [self._jobs.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._jobs.get_nowait())
            stopping = None in batch
            done: list[tuple[_Write, BaseException | None]] = []
            for job in batch:
                if job is None:
                    continue
                try:
                    self._store(job.request, job.completion)
                    done.append((job, None))
                except Exception as exc:  # a bug: that item's error, as in the engine's loop
                    done.append((job, exc))
            loop.call_soon_threadsafe(_settle, done)


@dataclass
class _Write:
    request: LLMRequest
    completion: Completion
    written: asyncio.Future[None]


def _settle(done: list[tuple[_Write, BaseException | None]]) -> None:
    for job, failure in done:
        if job.written.done():  # its request was cancelled meanwhile
            continue
        if failure is None:
            job.written.set_result(None)
        else:
            job.written.set_exception(failure)


class Engine:
    def __init__(
        self,
        cache: ResponseCache,
        *,
        mode: str,  # none | new | all
        concurrency: int,
        timeout: float,
        max_retries: int,
        rate_limit_retries: int = 10,
        budget: Budget | None = None,
        share: RunShare | None = None,
        workers: int = 1,
    ) -> None:
        self.cache = cache
        self.mode = mode
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.rate_limit_retries = rate_limit_retries
        self.budget = budget
        self.share = share
        self.workers = workers  # xdist workers sharing the run (concurrency is split)
        self.progress = Progress()
        self.limits: dict[str, AdaptiveLimit] = {}
        # Answers that could not be written to the cache (a read-only checkout, a full disk),
        # by request key: each item says so in a warning.
        self.unrecorded: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._slots: asyncio.Semaphore | None = None
        self._clients: dict[str, openai.AsyncOpenAI] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._claimed: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._recorder = Recorder(self._store)
        # Every model configured or asked (judges too): no key of any of them is kept in an
        # answer, even one that comes before the model holding the key is first asked.
        self._models: dict[str, ModelSpec] = {}
        # Questions sent in this run, by request digest and recording: an item asking one
        # again (a `cases_from` suite scores the answers of the suite it borrows) shares it.
        self._sent: dict[Asked, Pending] = {}

    # -- the main thread -------------------------------------------------------------------

    def know(self, *models: ModelSpec) -> None:
        """Models whose keys are taken out of every answer, before any of them is asked."""
        for model in models:
            self._models.setdefault(model.name, model)

    def start(self, request: LLMRequest) -> Pending:
        """Replay the answer from the cache where the mode allows; otherwise send it."""
        self.know(request.model)
        asked = _asked(request)
        if asked in self._sent:
            first = self._sent[asked]
            return Pending(request, first.future, first.notice)
        self.progress.add(request.model.name, total=1)
        replayed, notice = self._replay(request)
        if isinstance(replayed, Completion):
            return Pending(request, _resolved(replayed))
        if isinstance(replayed, CallError):
            return Pending(request, _failed(replayed))
        pending = self._sent[asked] = Pending(request, self._submit(request), notice)
        return pending

    def run(self, job: Coroutine[Any, Any, T]) -> Future[T]:
        """Run a coroutine that asks through this engine (``ask``) in its loop."""
        return asyncio.run_coroutine_threadsafe(job, self._ensure_loop())

    def result(self, future: Future[T], tick: Callable[[], None] | None = None) -> T:
        """A job's result (see ``follow``), redrawing progress meanwhile."""
        return _result(future, tick)

    def answer(self, pending: Pending, tick: Callable[[], None] | None = None) -> Completion:
        """The answer (raising CallError when there is none), redrawing progress meanwhile."""
        outcome = _result(pending.future, tick)
        if isinstance(outcome, _Elsewhere):
            loop = self._ensure_loop()
            shared = asyncio.run_coroutine_threadsafe(self._from_share(pending.request), loop)
            return _result(shared, tick)
        return outcome

    def follow(self, pending: Pending, job: Callable[[Completion], Awaitable[T]]) -> Future[T]:
        """Run ``job`` on the answer in the engine's loop as soon as it comes (to judge it,
        concurrently with every other request); the future of its result."""

        async def chain() -> T:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)  # cancelled with the rest when the engine closes
            try:
                outcome = await asyncio.wrap_future(pending.future)
                if isinstance(outcome, _Elsewhere):
                    outcome = await self._from_share(pending.request)
                return await job(outcome)
            finally:
                self._tasks.discard(task)

        return asyncio.run_coroutine_threadsafe(chain(), self._ensure_loop())

    async def ask(self, request: LLMRequest) -> Completion:
        """From a job in the engine's loop: an answer, as ``start`` and ``wait`` give one."""
        self.know(request.model)
        self.progress.add(request.model.name, total=1)
        replayed, _ = self._replay(request)
        if isinstance(replayed, Completion):
            return replayed
        if isinstance(replayed, CallError):
            raise replayed
        outcome = await self._run(request, shared=True)
        if isinstance(outcome, _Elsewhere):
            return await self._from_share(request)
        return outcome

    def _replay(self, request: LLMRequest) -> tuple[Completion | CallError | None, str]:
        """The recorded answer, or the error of not having one under --llm-record=none, or
        None (ask the model); and a note for the item when its recording is unreadable."""
        if self.mode == "all":
            return None, ""
        if self.share is not None and self.share.claimed(self._item_key(request)):
            # Asked in this run by another worker, which may have recorded it already: its
            # answer is this run's (not a replay), from the share.
            return None, ""
        model = request.model.name
        lookup = self.cache.load(request)
        if lookup.completion is not None:
            self.progress.add(model, done=1)
            return lookup.completion, ""
        shown = self.cache.shown(lookup.path)
        notice = ""
        if lookup.status == "unreadable":
            notice = f"recorded answer {shown} is unreadable ({lookup.detail})"
        if self.mode != "none":
            return None, notice + ("; recording it again" if notice else "")
        self.progress.add(model, done=1, errors=1)
        why = {
            "absent": f"no recorded answer (looked for {shown})",
            "changed": f"the answer recorded in {shown} is for a different request "
            "(the prompt, parameters, endpoint or model id changed)",
            "unreadable": notice,
        }[lookup.status]
        error = CallError(f"{why}; --llm-record=none replays only: record it with "
                          "--llm-record=new")  # fmt: skip
        return error, ""

    async def _from_share(self, request: LLMRequest) -> Completion:
        """The answer another xdist worker claimed, once it publishes it."""
        assert self.share is not None
        key = self._item_key(request)
        while (outcome := self.share.outcome(key)) is None:
            if not self.share.claimant_alive(key):
                # It may have published just before it went: look once more.
                outcome = self.share.outcome(key)
                if outcome is not None:
                    break
                # The worker that claimed it died without answering: ask here, unshared.
                answer = await self._run(request, shared=False)
                assert isinstance(answer, Completion)
                return answer
            await asyncio.sleep(POLL_S)
        if isinstance(outcome, CallError):
            raise outcome
        return outcome

    def plan(self, requests: Iterable[LLMRequest]) -> list[PlanRow]:
        """Per model: requests, those the cache would answer, estimated tokens and cost."""
        rows: dict[str, PlanRow] = {}
        for request in requests:
            row = rows.setdefault(request.model.name, PlanRow(request.model.name))
            row.requests += 1
            if self.mode != "all" and self.cache.load(request).status == "hit":
                row.recorded += 1
                continue  # a replayed answer costs nothing
            tokens_in, tokens_out = estimate_tokens(request)
            cost = estimate_cost(request)
            row.tokens_in += tokens_in
            row.tokens_out += tokens_out
            row.cost = None if cost is None or row.cost is None else row.cost + cost
        return list(rows.values())

    def status(self) -> str:
        """One line: per model done/total, then errors, spend, lowered limits."""
        counts = self.progress.snapshot()
        parts = [f"{name} {c.done}/{c.total}" for name, c in counts.items()]
        errors = sum(c.errors for c in counts.values())
        spent = sum(c.spent for c in counts.values())
        if errors:
            parts.append(f"{errors} errors")
        if spent:
            parts.append(f"${spent:.4f}")
        parts += [
            f"{name} 429s: {limit.limit} in flight"
            for name, limit in list(self.limits.items())
            if limit.limit < limit.maximum
        ]
        return " · ".join(parts)

    def close(self, *, interrupted: bool = False) -> None:
        """Stop. Requests this xdist worker claimed finish first, since other workers wait
        for them, unless the run was interrupted; the rest are cancelled. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(interrupted), loop).result()
        finally:
            self._recorder.close()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    # -- the engine's thread ---------------------------------------------------------------

    def _submit(self, request: LLMRequest, *, shared: bool = True) -> Future[Any]:
        loop = self._ensure_loop()
        return asyncio.run_coroutine_threadsafe(self._run(request, shared=shared), loop)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                self._slots = asyncio.Semaphore(self.concurrency)
                ready.set()
                loop.run_forever()

            # A daemon: an interrupted run must be able to exit whatever is in flight.
            self._thread = threading.Thread(target=serve, name="llmeval-engine", daemon=True)
            self._thread.start()
            ready.wait()
            self._loop = loop
        return self._loop

    async def _run(self, request: LLMRequest, *, shared: bool) -> Completion | _Elsewhere:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        share = self.share if shared else None
        try:
            completion = await self._send(request, share, task)
            if isinstance(completion, _Elsewhere):
                return completion
            await self._recorder.record(request, completion)  # off the event loop
        except CallError as exc:
            self._published(share, task, request, exc)
            raise
        except asyncio.CancelledError:
            self._published(share, task, request, CallError("the run was interrupted"))
            raise
        except Exception as exc:  # a client that cannot be built, a bug: this item's error
            failure = CallError(
                redact(f"{type(exc).__name__}: {exc}", *self._secret_holders(request))
            )
            raise self._published(share, task, request, failure) from exc
        finally:
            self._tasks.discard(task)
            self._claimed.discard(task)
        if share is not None:
            share.publish(self._item_key(request), completion)
        return completion

    def _published(
        self, share: RunShare | None, task: asyncio.Task[Any], request: LLMRequest, error: CallError
    ) -> CallError:
        """Tell the workers waiting for a request this one claimed that it failed."""
        if share is not None and task in self._claimed:
            share.publish(self._item_key(request), error)
        return error

    def _store(self, request: LLMRequest, completion: Completion) -> None:
        """Record the answer; one that cannot be recorded is still this run's answer."""
        try:
            self.cache.store(request, completion)
        except OSError as exc:
            path = self.cache.shown(self.cache.path(request))
            why = exc.strerror or str(exc)  # the path is named already, relative
            self.unrecorded[request.key] = f"could not record the answer in {path}: {why}"

    async def _send(
        self, request: LLMRequest, share: RunShare | None, task: asyncio.Task[Any]
    ) -> Completion | _Elsewhere:
        """Every attempt of the request, each through the model's limit and the run's slots:
        a retry waits its turn there (ahead of new requests), so it goes at the model's pace.
        A 429 spends the rate-limit allowance and waits what its Retry-After asks for (a
        backoff without one); any other retried failure spends ``max_retries``."""
        limit = self._limit(request)
        assert self._slots is not None
        model = request.model.name
        attempts = rate_limited = failures = 0
        started = 0.0
        estimate: float | None = None  # reserved from the budget, once the first is sent
        sent = False
        cost: float | None = 0.0  # a request that fails is not billed
        try:
            while True:
                in_flight = await limit.acquire(retry=attempts > 0)
                try:
                    async with self._slots:
                        if attempts == 0:
                            first = self._first_attempt(request, share, task)
                            if first is not None:
                                return first
                            estimate = self._reserve(request)
                            started = time.perf_counter()
                        began = limit.clock()
                        sent = True
                        try:
                            completion = await client.call(
                                self._client(request), request, attempt=attempts + 1,
                                since=started,
                            )  # fmt: skip
                        except CallError as exc:
                            error = exc
                        else:
                            break
                finally:
                    limit.release()
                attempts += error.attempts
                rate_limited += error.rate_limited
                retry = error.retry
                if retry is not None and retry.rate_limited:
                    limit.limited(began)
                    spent, allowed = rate_limited, self.rate_limit_retries
                else:
                    failures += 1
                    spent, allowed = failures, self.max_retries
                if retry is None or spent > allowed:
                    final = CallError(str(error), attempts=attempts, rate_limited=rate_limited,
                                      in_flight=in_flight)  # fmt: skip
                    raise final.redacted(self._secret_holders(request))
                await asyncio.sleep(_wait(retry, spent))
            # Its own model's key is out already; any other model's goes too.
            completion = dataclasses.replace(
                redacted(completion, self._secret_holders(request)),
                attempts=attempts + completion.attempts,
                rate_limited=rate_limited + completion.rate_limited,
                in_flight=in_flight,
            )
            cost = completion.cost
        except BaseException:
            if sent:  # (a budget refusal counts itself)
                self.progress.add(model, done=1, errors=1)
            raise
        finally:
            if self.budget is not None and estimate is not None:
                self.budget.settle(estimate, cost)
        self.progress.add(model, done=1, spent=completion.cost or 0.0)
        return completion

    def _first_attempt(
        self, request: LLMRequest, share: RunShare | None, task: asyncio.Task[Any]
    ) -> _Elsewhere | None:
        """Before a request is first sent: not when the run ends, nor when another xdist
        worker has claimed it (ELSEWHERE)."""
        if self._closing:  # a judge asked for while the run ends: not sent
            raise CallError("not sent: the run ended")
        if share is not None:
            if not share.claim(self._item_key(request)):
                return ELSEWHERE
            self._claimed.add(task)
        return None

    def _reserve(self, request: LLMRequest) -> float | None:
        """The request's estimated cost, reserved from the budget (None without one)."""
        if self.budget is None:
            return None
        estimate = estimate_cost(request) or 0.0
        if not self.budget.reserve(estimate):
            self.progress.add(request.model.name, done=1, errors=1)
            raise CallError(f"not sent: it would take the spend past {self.budget.label} "
                            f"(spent ${self.budget.spent:.4f} so far)")  # fmt: skip
        return estimate

    def _secret_holders(self, request: LLMRequest) -> list[ModelSpec]:
        """The models whose keys are taken out of what comes back for ``request``."""
        mine = request.model
        return [mine, *(m for m in self._models.values() if m.name != mine.name)]

    def _item_key(self, request: LLMRequest) -> str:
        """What xdist workers share: one cache entry's request. Two cases that send the same
        messages are two entries, so two requests; the same prompt twice in one Python test
        is one entry (as it is when replayed), so one request under xdist."""
        place = self.cache.path(request).relative_to(self.cache.root).as_posix()
        return hashlib.sha256(f"{place}\0{request.key}".encode()).hexdigest()

    def _client(self, request: LLMRequest) -> openai.AsyncOpenAI:
        model = request.model
        if model.name not in self._clients:
            limit = self._limit(request)

            async def on_response(response: Any) -> None:
                limit.observe(response.status_code, response.headers)

            self._clients[model.name] = client.async_client(
                model, timeout=self.timeout, on_response=on_response
            )
        return self._clients[model.name]

    def _limit(self, request: LLMRequest) -> AdaptiveLimit:
        name = request.model.name
        if name not in self.limits:
            cap = request.model.concurrency
            # A model's cap is for the run too: each worker takes its share (one at least).
            mine = self.concurrency if cap is None else math.ceil(cap / self.workers)
            self.limits[name] = AdaptiveLimit(mine)
        return self.limits[name]

    async def _shutdown(self, interrupted: bool) -> None:
        self._closing = True  # nothing new is sent from here on
        while self._claimed and not interrupted:
            # Other workers may be waiting for these answers. (Cancelled, they publish an
            # error instead, so no one waits for ever.)
            await asyncio.wait(set(self._claimed))
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sdk in list(self._clients.values()):
            await sdk.close()


# The backoff of an attempt whose failure names no wait, as the SDK's: 0.5 s doubling to
# at most 8 s, each shortened by up to a quarter at random so that retries spread out.
FIRST_BACKOFF_S = 0.5
LONGEST_BACKOFF_S = 8.0


def _wait(retry: Retry, spent: int) -> float:
    """Seconds before the next attempt, the ``spent``-th retry of its kind."""
    if retry.after is not None:
        return retry.after
    backoff = min(FIRST_BACKOFF_S * 2 ** (spent - 1), LONGEST_BACKOFF_S)
    return float(backoff * (1 - 0.25 * random.random()))


def _asked(request: LLMRequest) -> Asked:
    """What names a request's recording, as its cache path does, at a tuple's cost."""
    return (request.key, request.model.name, request.group, request.name, request.repeat,
            request.pinned)  # fmt: skip


def _resolved(completion: Completion) -> Future[Completion | _Elsewhere]:
    future: Future[Completion | _Elsewhere] = Future()
    future.set_result(completion)
    return future


def _failed(error: CallError) -> Future[Completion | _Elsewhere]:
    future: Future[Completion | _Elsewhere] = Future()
    future.set_exception(error)
    return future


def _result(future: Future[T], tick: Callable[[], None] | None) -> T:
    if tick is None:
        return future.result()
    while True:
        try:
            return future.result(timeout=TICK_S)
        except TimeoutError:
            tick()
