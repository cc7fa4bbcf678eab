"""Headless Chromium for page checks: load a page, report console errors and network requests.

Drives Debian's ``chromium`` over the DevTools protocol through ``--remote-debugging-pipe`` (file
descriptors 3 and 4, NUL-separated JSON), so no extra Python package and no TCP port are needed.

    report = load_page(path, wait_for="document.title === 'ready'",
                       evaluate={"bars": "document.querySelectorAll('.bar').length"})
    assert report.errors == []          # console.error/warn, uncaught exceptions, log errors
    assert report.external_requests == []  # anything not file:// / data: / about:
    assert report.values["bars"] == 7

The browser runs with every host name mapped to NOTFOUND, so a page that tries to fetch from the
network fails loudly (``external_requests`` lists it) instead of hanging. ``.ci/run`` installs
``chromium`` where missing; :func:`chromium_path` raises if it is not there (a test needing the
browser must fail, not skip).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
    "--remote-debugging-pipe",
)
_LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:", "chrome:", "devtools:")


def chromium_path() -> str:
    """The Chromium binary (``$CHROMIUM``, else ``chromium`` / ``chromium-browser`` on PATH)."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (found := shutil.which(name)):
            return found
    raise RuntimeError("chromium not found: install Debian's `chromium` (.ci/run does) or set $CHROMIUM")


@dataclass
class ConsoleEntry:
    level: str  # "log", "info", "warning", "error", "exception", ...
    text: str


@dataclass
class PageReport:
    url: str
    console: list[ConsoleEntry] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    loaded: bool = False
    ready: bool = False

    @property
    def errors(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and browser log errors."""
        return [f"{e.level}: {e.text}" for e in self.console if e.level in ("error", "warning", "exception", "assert")]

    @property
    def external_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(_LOCAL_SCHEMES)]


class _Pipe:
    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int) -> None:
        self._proc = proc
        self._w = to_browser
        self._r = from_browser
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def pump(self, seconds: float) -> None:
        """Collect events for ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read(deadline))
        except TimeoutError:
            return

    def _read(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from chromium")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"chromium exited (rc={self._proc.poll()})")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)


def load_page(target: str | Path, *, wait_for: str | None = None, evaluate: dict[str, str] | None = None,
              timeout: float = 30.0, settle: float = 0.3) -> PageReport:
    """Load ``target`` (a path or URL) in headless Chromium and report what happened.

    ``wait_for`` is a JS expression polled until truthy (``report.ready``); ``evaluate`` maps names
    to JS expressions whose JSON values land in ``report.values`` once the page is ready.
    """
    url = target if isinstance(target, str) and "://" in target else Path(target).resolve().as_uri()
    report = PageReport(url=url)
    to_r, to_w = _high(os.pipe())  # we write to_w, chromium reads fd 3
    from_r, from_w = _high(os.pipe())  # chromium writes fd 4, we read from_r
    with tempfile.TemporaryDirectory(prefix="otel_mlflow_chromium_") as profile:
        # The shell puts our pipe ends on the fds 3 and 4 that --remote-debugging-pipe expects.
        proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_r} 4>&{from_w} {to_r}<&- {from_w}>&-',
             chromium_path(), *_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(to_r, from_w),
        )
        os.close(to_r)
        os.close(from_w)
        pipe = _Pipe(proc, to_w, from_r)
        try:
            _drive(pipe, report, wait_for, evaluate or {}, timeout, settle)
        finally:
            try:
                pipe.send("Browser.close", timeout=5)
            except Exception:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.close(to_w)
            os.close(from_r)
    return report


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """Move a pipe's ends to fds >= 10, so the shell's 3/4 redirections cannot clobber them."""
    import fcntl

    moved = []
    for fd in fds:
        moved.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return moved[0], moved[1]


def _drive(pipe: _Pipe, report: PageReport, wait_for: str | None, evaluate: dict[str, str],
           timeout: float, settle: float) -> None:
    deadline = time.monotonic() + timeout
    targets = pipe.send("Target.getTargets")["targetInfos"]
    page = next(t for t in targets if t["type"] == "page")
    session = pipe.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Network", "Page"):
        pipe.send(f"{domain}.enable", session=session)
    pipe.send("Page.navigate", {"url": report.url}, session=session)
    while time.monotonic() < deadline and not any(
        e.get("method") == "Page.loadEventFired" for e in pipe.events
    ):
        pipe.pump(0.1)
    report.loaded = any(e.get("method") == "Page.loadEventFired" for e in pipe.events)
    pipe.pump(settle)

    def js(expr: str) -> Any:
        res = pipe.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=session)
        if "exceptionDetails" in res:
            raise RuntimeError(f"evaluating {expr!r}: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    if wait_for is None:
        report.ready = report.loaded
    else:
        while time.monotonic() < deadline:
            if js(f"Boolean({wait_for})"):
                report.ready = True
                break
            pipe.pump(0.1)
    for name, expr in evaluate.items():
        report.values[name] = js(expr)
    pipe.pump(0.05)
    _collect(pipe.events, report)


def _collect(events: list[dict[str, Any]], report: PageReport) -> None:
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            report.console.append(ConsoleEntry(p.get("type", "log"), text))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text", "")
            report.console.append(ConsoleEntry("exception", text))
        elif method == "Log.entryAdded":
            entry = p.get("entry", {})
            report.console.append(ConsoleEntry(entry.get("level", "info"), entry.get("text", "") + " " + entry.get("url", "")))
        elif method == "Network.requestWillBeSent":
            report.requests.append(p.get("request", {}).get("url", ""))
