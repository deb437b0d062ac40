"""A real headless Chromium opening a page from disk, driven over the DevTools protocol on a pipe.

Why the protocol and not `--screenshot` plus `--enable-logging=stderr`: the log prints console
messages without their level (console.log and console.error look alike), says nothing of an image
that failed to load, and mixes in dbus and GPU noise that differs between machines. With
`--remote-debugging-pipe` Chromium reads protocol commands from fd 3 and writes replies and events
to fd 4, NUL-terminated JSON: no port, no websocket library, nothing else on the machine can
connect. We enable the Runtime and Log domains before navigating, so every console error
(`Runtime.consoleAPICalled` of type error/assert), uncaught exception (`Runtime.exceptionThrown`)
and browser-side error such as a missing file (`Log.entryAdded`, level error) is an event we read,
wait for the load event (all images loaded or failed), ask the page which <img> did not decode,
and take the screenshot with `Page.captureScreenshot`.
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, NAMES) if p), None)


@dataclass
class PageLoad:
    errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    png: bytes = b""


class _Pipe:
    """The two pipes to one Chromium process: commands out, replies and events in."""

    def __init__(self, write_fd: int, read_fd: int, timeout_s: float):
        self.w, self.r, self.timeout_s = write_fd, read_fd, timeout_s
        self.buf, self.next_id, self.events = b"", 0, []

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        reply = self.wait(lambda m: m.get("id") == msg["id"])
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait(self, match) -> dict:
        """The first message `match` accepts; every other one is kept in `events`."""
        end = time.monotonic() + self.timeout_s
        while True:
            while b"\0" in self.buf:
                raw, self.buf = self.buf.split(b"\0", 1)
                m = json.loads(raw)
                if match(m):
                    return m
                self.events.append(m)
            ready, _, _ = select.select([self.r], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the pipe (it exited)")
            self.buf += chunk


def _errors(events: list[dict]) -> list[str]:
    out = []
    for e in events:
        p = e.get("params", {})
        if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif e.get("method") == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            out.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}".strip())
        elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
            out.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}".strip())
    return out


def load_page(url: str, width: int = 1000, height: int = 1300, chromium: str | None = None,
              timeout_s: float = 60) -> PageLoad:
    """Open `url` in a fresh headless Chromium (its own throw-away profile) and report what went
    wrong and what it looked like (a `width` x `height` viewport screenshot, PNG bytes)."""
    exe = chromium or find_chromium()
    if not exe:
        raise FileNotFoundError("no Chromium on PATH (" + ", ".join(NAMES) + ")")
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()

    def fds_3_and_4() -> None:       # in the child: the pipe ends where Chromium looks for them
        a, b = os.dup(to_r), os.dup(from_w)
        os.dup2(a, 3)
        os.dup2(b, 4)

    with tempfile.TemporaryDirectory(prefix="ft-chromium-") as profile:
        proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
             f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=fds_3_and_4, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        pipe = _Pipe(to_w, from_r, timeout_s)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            s = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.call(f"{domain}.enable", session=s)
            pipe.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=s)
            nav = pipe.call("Page.navigate", {"url": url}, session=s)
            result = PageLoad()
            if nav.get("errorText"):
                result.errors.append(f"navigate: {nav['errorText']}")
            else:
                pipe.wait(lambda m: m.get("method") == "Page.loadEventFired")
            js = "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
            result.broken_images = pipe.call("Runtime.evaluate", {"expression": js, "returnByValue": True},
                                             session=s)["result"].get("value", [])
            result.png = base64.b64decode(pipe.call("Page.captureScreenshot", {"format": "png"}, session=s)["data"])
            result.errors += _errors(pipe.events)
            try:
                pipe.call("Browser.close")
            except (EOFError, OSError):
                pass
            return result
        finally:
            os.close(to_w)
            os.close(from_r)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()          # only the process started here
                proc.wait()
