"""Recorded answers: one small JSON file per answer, in a directory meant to be committed.

A YAML case's answer lives at ``<root>/<suite>/<case>.<model>.json`` (one file per case and
model, so a re-recorded answer shows in a diff as a change to that file); a Python test's
answers at ``<root>/<test module>/<test>.<model>.<key>.json``. Each file keeps the digest of
the request it answers: a changed prompt, parameter, endpoint or model id no longer matches.
Files are written whole to a temporary name and renamed, so a reader never sees half of
one, however many processes record at once and wherever a run is interrupted.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pytest_llmeval.engine.client import (
    Completion,
    LLMRequest,
    cost_of,
    endpoint_url,
    received,
    redact,
)
from pytest_llmeval.support.files import write_atomically

FORMAT = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

Status = Literal["hit", "absent", "changed", "unreadable"]


class CacheWarning(UserWarning):
    """A recorded answer could not be used as it is (shown in pytest's warnings summary)."""


@dataclass(frozen=True)
class Lookup:
    status: Status
    path: Path
    completion: Completion | None = None
    detail: str = ""  # why an unreadable file could not be read


class ResponseCache:
    def __init__(self, root: Path, label: str) -> None:
        self.root = root
        self.label = label  # the root as the person running pytest names it

    def shown(self, path: Path) -> str:
        return f"{self.label}/{path.relative_to(self.root).as_posix()}"

    def path(self, request: LLMRequest) -> Path:
        stem = f"{_safe(request.name)}.{_safe(request.model.name)}"
        if request.repeat:
            stem += f".r{request.repeat + 1}"  # as the item: kettle[gpt-4-r2]
        if not request.pinned:
            stem += f".{request.key[:12]}"
        folder = self.root.joinpath(*(_safe(part) for part in request.group.split("/")))
        return folder / f"{stem}.json"

    def load(self, request: LLMRequest) -> Lookup:
        path = self.path(request)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Lookup("absent", path)
        except OSError as exc:
            return Lookup("unreadable", path, detail=exc.strerror or str(exc))
        except UnicodeDecodeError as exc:
            return Lookup("unreadable", path, detail=str(exc))
        try:
            entry = json.loads(text)
            if entry.get("key") != request.key:
                return Lookup("changed", path)
            return Lookup("hit", path, _completion(entry, request))
        except (ValueError, AttributeError, KeyError, TypeError) as exc:
            # Hand edits, a merge's conflict markers, a file cut short by a full disk.
            return Lookup("unreadable", path, detail=f"{type(exc).__name__}: {exc}")

    def store(self, request: LLMRequest, completion: Completion) -> Path:
        path = self.path(request)
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        entry = {
            "format": FORMAT,
            "key": request.key,
            "model": request.model.model,
            "endpoint": redact(endpoint_url(request.model), request.model),
            # For the person reviewing a recording: what was asked, what came back.
            "input": redact(last_user, request.model),
            "answer": redact(completion.text, request.model),
            "note": redact(completion.note, request.model),
            "input_tokens": completion.input_tokens,
            "output_tokens": completion.output_tokens,
            "latency_s": round(completion.latency_s, 4),
        }
        text = json.dumps(entry, indent=2, ensure_ascii=False)
        if _LONE_SURROGATE.search(text):  # UTF-8 cannot hold one: escaped, as JSON allows
            text = json.dumps(entry, indent=2)
        write_atomically(path, text + "\n")
        return path


def _completion(entry: dict[str, Any], request: LLMRequest) -> Completion:
    answer, note = entry["answer"], entry.get("note", "")
    tokens_in, tokens_out = entry.get("input_tokens"), entry.get("output_tokens")
    latency = entry["latency_s"]
    if not (isinstance(answer, str) and isinstance(note, str)):
        raise TypeError("answer and note must be strings")
    if not all(t is None or (isinstance(t, int) and t >= 0) for t in (tokens_in, tokens_out)):
        raise TypeError("token counts must be whole numbers")
    if not isinstance(latency, int | float) or latency < 0:
        raise TypeError("latency_s must be a number of seconds")
    return Completion(
        # One recorded before keys were taken out of answers keeps none in this run.
        text=received(answer, request.model),
        latency_s=float(latency),
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        # Priced now, from the token counts: a price corrected since recording applies.
        cost=cost_of(request.model, tokens_in, tokens_out),
        note=received(note, request.model),
        cached=True,
        attempts=0,
    )


def _safe(name: str) -> str:
    """A file name part for any name; names that had to change get a digest, so two
    different names never share a file."""
    safe = _UNSAFE.sub("_", name).lstrip(".") or "_"
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:6]
    return safe
