"""Drive Debian's headless Chromium over the DevTools protocol, for tests that check HTML output.

Standard library only: the browser is spoken to through ``--remote-debugging-pipe``, where each
DevTools message is JSON followed by a NUL byte, read by Chromium from its fd 3 and written to its
fd 4. No port is opened, so parallel test workers cannot collide and nothing else can connect::

    with Chromium() as browser:
        page = browser.open(path.as_uri())
        assert page.console_errors == []
        assert page.requests == [path.as_uri()]
        assert page.evaluate("document.querySelectorAll('svg').length") == 3
        page.screenshot(tmp_path / "report.png")
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["Chromium", "ChromiumError", "Page", "chromium_path"]

DEFAULT_EXECUTABLE = "/usr/bin/chromium"

# Everything that would make the browser reach out on its own is off: the machine running the tests
# may have no network, and a request the page did not make must not show up in Page.requests.
FLAGS = (
    "--headless",
    "--no-sandbox",  # Chromium's sandbox refuses to run as root, which CI containers often are.
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-pipe",
)

# How much of Chromium's stderr an error message quotes: enough for the crash reason, not the
# whole startup chatter.
STDERR_TAIL = 3000

Message = dict[str, Any]

# Run as ``python -c`` with the browser's ends of both pipes, then its command line.
_ONTO_FDS_3_AND_4 = """\
import os, sys
commands, replies = int(sys.argv[1]), int(sys.argv[2])
os.dup2(commands, 3)
os.dup2(replies, 4)
os.close(commands)
os.close(replies)
os.execv(sys.argv[3], sys.argv[3:])
"""


def chromium_path() -> str | None:
    """The Chromium executable, or None when it is not installed, so a test can skip with a reason."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.access(DEFAULT_EXECUTABLE, os.X_OK):
        return DEFAULT_EXECUTABLE
    return None


class ChromiumError(RuntimeError):
    """The browser did not do what was asked: it timed out, crashed, or reported an error."""


def _stderr_tail(fd: int) -> str:
    """The last lines of Chromium's stderr, without the D-Bus complaints that would bury them.

    Without a session bus (containers, CI) Chromium logs a dozen D-Bus errors a second; they are
    never why a test failed.
    """
    size = os.fstat(fd).st_size
    start = max(0, size - 20 * STDERR_TAIL)
    # pread leaves the shared file offset alone; Chromium writes through the same one.
    lines = os.pread(fd, size - start, start).decode(errors="replace").splitlines()
    if start:
        lines = lines[1:]  # Most likely cut mid-line.
    kept = [line for line in lines if ":ERROR:dbus/" not in line]
    dropped = len(lines) - len(kept)
    text = "\n".join(kept)[-STDERR_TAIL:].strip()
    note = f" ({dropped} D-Bus error lines left out)" if dropped else ""
    return f"Chromium's stderr (end){note}:\n{text}" if text else f"Chromium's stderr: empty{note}"


def _group_running(pgid: int) -> bool:
    """Whether a process of the group still runs; exited ones not yet reaped (zombies) do not count.

    The browser's zygotes are orphaned when it exits and wait for init to reap them, which in some
    containers takes seconds; kill(0) would count them.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # Exited while we looked.
            continue
        # The command name (field 2) may hold spaces and parentheses; the fields after it do not.
        state, _ppid, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(group) == pgid and state not in ("Z", "X"):
            return True
    return False


def _high_fd(fd: int) -> int:
    """Move ``fd`` to 10 or above, so the redirections onto fds 3 and 4 can never overwrite it."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def _describe_remote_object(obj: Message) -> str:
    """A console argument as the DevTools console would print it."""
    if "value" in obj:
        value = obj["value"]
        return value if isinstance(value, str) else json.dumps(value)
    for key in ("unserializableValue", "description"):
        if key in obj:
            return str(obj[key])
    return str(obj.get("type", "?"))


def _describe_exception(details: Message) -> str:
    """An uncaught exception as ``text: description (url:line)``; ``text`` alone is only 'Uncaught'."""
    parts = [str(details.get("text", "exception"))]
    description = (details.get("exception") or {}).get("description")
    if description:
        parts.append(str(description))
    text = ": ".join(parts)
    url = details.get("url")
    if url:
        # DevTools line numbers are 0-based; people count from 1.
        text += f" ({url}:{int(details.get('lineNumber', 0)) + 1})"
    return text


class _Connection:
    """The pipe to the browser: numbered commands, their responses, and events routed by session.

    A background thread reads fd 4 the whole time, so events that arrive before, between or
    interleaved with command responses (console messages during navigation) are never lost, and a
    large response (a screenshot) can never block the browser on a full pipe.
    """

    def __init__(self, write_fd: int, read_fd: int, describe_failure: Callable[[], str]) -> None:
        self._write_fd = write_fd
        self._read_fd = read_fd
        self._describe_failure = describe_failure
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._next_id = 0
        self._responses: dict[int, Message] = {}
        self._handlers: dict[str, Callable[[str, Message], None]] = {}
        # Events for a session no Page has claimed yet, replayed when one does.
        self._unclaimed: dict[str, list[tuple[str, Message]]] = {}
        self.closed = False
        self.read_error: BaseException | None = None
        self._reader = threading.Thread(target=self._read_loop, name="chromium-cdp", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        buffer = bytearray()
        try:
            while chunk := os.read(self._read_fd, 1 << 20):
                buffer += chunk
                while (end := buffer.find(b"\0")) >= 0:
                    message = json.loads(bytes(buffer[:end]))
                    del buffer[: end + 1]
                    self._dispatch(message)
        except BaseException as exc:  # Recorded for the waiter, who can say what it waited for.
            self.read_error = exc
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def _dispatch(self, message: Message) -> None:
        with self._cond:
            if "id" in message:
                self._responses[message["id"]] = message
            else:
                session = message.get("sessionId", "")
                method = str(message.get("method", ""))
                params = message.get("params") or {}
                handler = self._handlers.get(session)
                if handler is not None:
                    handler(method, params)
                elif session:
                    self._unclaimed.setdefault(session, []).append((method, params))
                # Browser-level events (Target.targetCreated and the like) are not needed.
            self._cond.notify_all()

    def claim(self, session: str, handler: Callable[[str, Message], None]) -> None:
        """Send a session's events to ``handler`` (called on the reader thread, under the lock)."""
        with self._cond:
            self._handlers[session] = handler
            for method, params in self._unclaimed.pop(session, []):
                handler(method, params)

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float) -> None:
        """Block until ``predicate()`` holds (checked under the lock), or raise naming ``what``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                if self.closed:
                    reason = f": {self.read_error!r}" if self.read_error else ""
                    raise ChromiumError(
                        f"Chromium closed its DevTools pipe while waiting for {what}{reason}"
                        f"{self._describe_failure()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ChromiumError(
                        f"timed out after {timeout:g}s waiting for {what}{self._describe_failure()}"
                    )
                self._cond.wait(remaining)

    def send(self, method: str, params: Message | None, session: str | None) -> int:
        with self._cond:
            self._next_id += 1
            message_id = self._next_id
        message: Message = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        with self._write_lock:
            try:
                while data:
                    data = data[os.write(self._write_fd, data) :]
            except OSError as exc:
                raise ChromiumError(
                    f"could not send {method} to Chromium: {exc}{self._describe_failure()}"
                ) from exc
        return message_id

    def call(
        self, method: str, params: Message | None, session: str | None, timeout: float
    ) -> Message:
        """Send a command and return its result; a protocol error becomes a ChromiumError."""
        message_id = self.send(method, params, session)
        self.wait_for(lambda: message_id in self._responses, f"the reply to {method}", timeout)
        with self._cond:
            response = self._responses.pop(message_id)
        if "error" in response:
            error = response["error"]
            raise ChromiumError(
                f"{method} failed: {error.get('message')} {error.get('data', '')}".rstrip()
            )
        result: Message = response.get("result") or {}
        return result

    def join(self, timeout: float) -> None:
        self._reader.join(timeout)


class Page:
    """One tab, attached through a flat DevTools session.

    ``console_errors`` and ``requests`` fill in as the page runs; read them after
    :meth:`Chromium.open` (or after an :meth:`evaluate` that lets later timers run).
    """

    def __init__(self, connection: _Connection, session: str, target: str, timeout: float) -> None:
        self._connection = connection
        self._session = session
        self.target_id = target
        self.timeout = timeout
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        self._loads = 0
        connection.claim(session, self._on_event)

    def _on_event(self, method: str, params: Message) -> None:
        if method == "Runtime.consoleAPICalled":
            if params.get("type") in ("error", "assert"):
                args = params.get("args") or []
                text = " ".join(_describe_remote_object(arg) for arg in args)
                if params.get("type") == "assert":
                    text = f"Assertion failed: {text}".rstrip(": ")
                self.console_errors.append(text)
        elif method == "Runtime.exceptionThrown":
            self.console_errors.append(_describe_exception(params.get("exceptionDetails") or {}))
        elif method == "Log.entryAdded":
            entry = params.get("entry") or {}
            if entry.get("level") == "error":
                text = str(entry.get("text", ""))
                if entry.get("url"):
                    text += f" ({entry['url']})"
                self.console_errors.append(text)
        elif method == "Network.requestWillBeSent":
            self.requests.append(str((params.get("request") or {}).get("url", "")))
        elif method == "Page.loadEventFired":
            self._loads += 1

    def _call(self, method: str, params: Message | None = None) -> Message:
        return self._connection.call(method, params, self._session, self.timeout)

    def navigate(self, url: str) -> None:
        """Load ``url`` and wait for its load event and for zero-delay timers queued by then.

        The extra turn of the event loop means errors thrown by ``setTimeout(..., 0)`` callbacks
        scheduled while the page loaded are already in ``console_errors`` when this returns.
        """
        loads_before = self._loads
        result = self._call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise ChromiumError(f"could not open {url}: {result['errorText']}")
        self._connection.wait_for(
            lambda: self._loads > loads_before, f"the load event of {url}", self.timeout
        )
        self.evaluate("new Promise(resolve => setTimeout(resolve, 0))")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise), as JSON would give it."""
        result = self._call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        details = result.get("exceptionDetails")
        if details:
            raise ChromiumError(
                f"JavaScript raised while evaluating {expression!r}: {_describe_exception(details)}"
            )
        remote = result.get("result") or {}
        if "unserializableValue" in remote:  # NaN, Infinity, -0 and bigints have no JSON form.
            return remote["unserializableValue"]
        return remote.get("value")

    def screenshot(self, path: Path, full_page: bool = True) -> tuple[int, int]:
        """Write a PNG of the page (all of it, or only the window) and return its pixel size."""
        params: Message = {"format": "png"}
        if full_page:
            metrics = self._call("Page.getLayoutMetrics")
            size = metrics["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": size["height"],
                "scale": 1,
            }
        png = base64.b64decode(self._call("Page.captureScreenshot", params)["data"])
        if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
            raise ChromiumError(f"Page.captureScreenshot did not return a PNG: {png[:16]!r}")
        Path(path).write_bytes(png)
        width, height = struct.unpack(">II", png[16:24])
        return int(width), int(height)

    def pdf(self) -> bytes:
        """The page printed to PDF, backgrounds included (report colours are backgrounds)."""
        result = self._call("Page.printToPDF", {"printBackground": True})
        return base64.b64decode(result["data"])

    def emulate_media(self, media: str) -> None:
        """Make ``@media`` rules match ``media`` ('print'; '' restores), so screenshots show it."""
        self._call("Emulation.setEmulatedMedia", {"media": media})


def _remove_tree(path: str) -> None:
    """Delete the profile, retrying for a moment if something in it was still being written.

    The crash handler lives outside the browser's process group and may still be closing its files
    there just after the browser has exited.
    """
    deadline = time.monotonic() + 5
    while True:
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


class Chromium:
    """A headless Chromium for the length of a ``with`` block, with a throwaway profile.

    ``width`` and ``height`` size the window, as on a laptop screen; headless Chromium keeps 87px
    of it for browser UI it does not draw, so a 1366x900 window shows pages in a 1366x813 viewport.
    """

    def __init__(
        self,
        executable: str = DEFAULT_EXECUTABLE,
        width: int = 1366,
        height: int = 900,
        timeout: float = 60.0,
    ) -> None:
        self.executable = executable
        self.width = width
        self.height = height
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: _Connection | None = None
        self._profile: str | None = None
        self._stderr: IO[bytes] | None = None
        self._fds: list[int] = []

    def __enter__(self) -> Chromium:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        if not os.access(self.executable, os.X_OK):
            raise ChromiumError(f"no Chromium executable at {self.executable}")
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        # A file, not a pipe: nobody drains Chromium's chatter while a test runs, and a full pipe
        # would stall the browser. It lives until close(), so no with block.
        self._stderr = tempfile.TemporaryFile(prefix="chromium-stderr-")  # noqa: SIM115
        to_browser_read, to_browser_write = (_high_fd(fd) for fd in os.pipe())
        from_browser_read, from_browser_write = (_high_fd(fd) for fd in os.pipe())
        self._fds = [to_browser_read, to_browser_write, from_browser_read, from_browser_write]
        args = [
            self.executable,
            *FLAGS,
            f"--user-data-dir={self._profile}",
            f"--window-size={self.width},{self.height}",
        ]
        # Popen can only pass fds under their own numbers, and moving them in a preexec_fn is not
        # thread-safe and can clobber Popen's own error pipe if that is fd 3 or 4 (dash, the usual
        # /bin/sh, cannot redirect fds above 9). A tiny Python moves them and execs; exec keeps the
        # pid, so self._process is Chromium itself (Debian's /usr/bin/chromium wrapper execs too).
        trampoline = [sys.executable, "-I", "-S", "-c", _ONTO_FDS_3_AND_4]
        self._process = subprocess.Popen(
            [*trampoline, str(to_browser_read), str(from_browser_write), *args],
            stdin=subprocess.DEVNULL,
            # Chromium keeps its crash database (~/.config/chromium/Crash Reports) and dconf cache
            # outside --user-data-dir; pointing XDG there too leaves the user's home untouched.
            env={
                **os.environ,
                "XDG_CONFIG_HOME": os.path.join(self._profile, "xdg-config"),
                "XDG_CACHE_HOME": os.path.join(self._profile, "xdg-cache"),
            },
            stdout=self._stderr,
            stderr=self._stderr,
            pass_fds=(to_browser_read, from_browser_write),
            # Its own process group, so renderers left behind by a killed browser can be ended too.
            start_new_session=True,
        )
        # The child's ends must be closed here, or the reader never sees EOF when Chromium exits.
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._fds = [to_browser_write, from_browser_read]
        self._connection = _Connection(to_browser_write, from_browser_read, self._failure_context)
        # The first reply proves the browser is up and speaking the protocol.
        self._browser_call("Browser.getVersion")

    def _failure_context(self) -> str:
        """Whether Chromium is still running, and the end of its stderr, for error messages."""
        lines = []
        if self._process is not None:
            if self._connection is not None and self._connection.closed:
                # The pipe closes a moment before the process can be reaped; its status says why.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(1)
            if self._process.returncode is not None:
                lines.append(f"Chromium exited with status {self._process.returncode}")
        if self._stderr is not None:
            lines.append(_stderr_tail(self._stderr.fileno()))
        return "\n" + "\n".join(lines) if lines else ""

    def _browser_call(self, method: str, params: Message | None = None) -> Message:
        if self._connection is None:
            raise ChromiumError("Chromium is not running; use it as a context manager")
        return self._connection.call(method, params, None, self.timeout)

    def open(self, url: str) -> Page:
        """A new tab showing ``url``, with console errors and requests recorded from the start.

        The tab starts blank so the domains can be enabled before the page's own scripts run.
        """
        if self._connection is None:
            raise ChromiumError("Chromium is not running; use it as a context manager")
        target = self._browser_call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._browser_call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        page = Page(self._connection, session, target, self.timeout)
        for domain in ("Page", "Runtime", "Log", "Network"):
            page._call(f"{domain}.enable")
        page.navigate(url)
        return page

    def close(self) -> None:
        """Ask the browser to quit, kill it if it does not, and remove every trace of it."""
        process, self._process = self._process, None
        connection, self._connection = self._connection, None
        try:
            if process is not None:
                self._stop(process, connection)
            if connection is not None:
                connection.join(5)
        finally:
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds = []
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None
            if self._profile is not None:
                _remove_tree(self._profile)
                self._profile = None

    def _stop(self, process: subprocess.Popen[bytes], connection: _Connection | None) -> None:
        if connection is not None and process.poll() is None and not connection.closed:
            # The browser may exit before it replies; only its exit below matters.
            with contextlib.suppress(ChromiumError):
                connection.send("Browser.close", None, None)
        try:
            process.wait(timeout=min(self.timeout, 15))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Renderer and GPU processes quit shortly after the browser; wait for them, and end any
        # straggler, so no test leaves Chromium processes behind.
        deadline = time.monotonic() + 5
        while _group_running(process.pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                return
            time.sleep(0.05)
