"""Whatever ends the run, what finished is kept: SIGINT and SIGTERM (what CI runners and
`timeout` send) stop a real pytest process, in one process and under xdist, with the
results file, JUnit, HTML and Markdown written for every finished item and the
recordings there for the next run to resume from."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_llmeval.results.saved_run import SavedRun
from tests.openai_server import OpenAIServer, Reply, Request

CASES = 6
FAST = 3  # the first three answer at once; the others would take a minute


def project(root: Path, server: OpenAIServer) -> None:
    (root / "pyproject.toml").write_text(f"""
[tool.pytest.ini_options]
llmeval_models = "m1"
[tool.llmeval.models.m1]
base_url = "{server.url}"
""")
    lines = ["suite: signals", 'prompt: {user: "case {n}"}', "cases:"]
    lines += [f"  - {{id: c{n}, inputs: {{n: {n}}}, expected: {{n: {n}}}}}" for n in range(CASES)]
    (root / "signals.llmeval.yaml").write_text("\n".join(lines) + "\n")


def answer(slow: bool) -> object:
    def reply(request: Request) -> Reply:
        n = int(request.last_user_content.split()[-1])
        return Reply(content=json.dumps({"n": n}), delay=60.0 if slow and n >= FAST else 0.0)

    return reply


def asked(server: OpenAIServer) -> list[int]:
    return sorted(int(r.last_user_content.split()[-1]) for r in server.requests)


@pytest.mark.parametrize(
    ("sig", "workers"),
    [(signal.SIGINT, []), (signal.SIGTERM, []), (signal.SIGTERM, ["-n", "2"])],
    ids=["sigint", "sigterm", "sigterm-xdist"],
)
def test_a_signal_ends_the_run_and_keeps_what_finished(
    tmp_path: Path, sig: signal.Signals, workers: list[str]
) -> None:
    temp = tmp_path / "tmp"  # the run's own temp dir: its share directory must not stay
    temp.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    with OpenAIServer() as server:
        server.on("m1", answer(slow=True))
        project(work, server)
        outputs = ["--llm-save=run.json", "--junitxml=junit.xml", "--llm-html=report.html",
                   "--llm-markdown=summary.md"]  # fmt: skip
        env = {**os.environ, "TMPDIR": str(temp)}
        run = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *workers, *outputs],
            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        # The signal comes once the (controller's) report of every fast item is printed:
        # the slow ones are then waiting for their answers.
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(run.stdout or ()), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while sum("PASSED" in line for line in lines) < FAST and time.monotonic() < deadline:
            time.sleep(0.05)
        run.send_signal(sig)
        # A hang bound, not a speed claim (which would be a timed assertion): here the
        # process ends 2.6 to 3.3 s after the signal, and about 10 s on a loaded machine.
        run.wait(timeout=60)
        reader.join(timeout=10)
        out = "".join(lines)
        assert run.returncode == pytest.ExitCode.INTERRUPTED, out
        assert "Traceback" not in out

        saved = SavedRun.load(work / "run.json")
        finished = sorted(r.case for r in saved.records)
        assert finished == [f"c{n}" for n in range(FAST)], out
        assert all(r.outcome == "pass" for r in saved.records)
        cases = ET.parse(work / "junit.xml").getroot().iter("testcase")
        assert {c.get("name") for c in cases} >= {f"c{n}[m1]" for n in range(FAST)}
        assert "c0" in (work / "report.html").read_text()
        assert "## pytest-llmeval" in (work / "summary.md").read_text()
        assert not list(temp.glob("llmeval-run-*")), "the share directory was left behind"

        # The next run asks again only what had not been answered.
        server.clear_requests()
        server.on("m1", answer(slow=False))
        again = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
            cwd=work, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert again.returncode == 0, again.stdout
        assert asked(server) == list(range(FAST, CASES))
