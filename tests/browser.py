"""Open an HTML file in headless Chromium and report what a reader's browser would see.

Chromium is driven over the DevTools protocol (a websocket; ``websocket-client``): the page
is loaded from ``file://``, console messages, uncaught exceptions and log errors are
collected, every ``<img>`` is checked (``complete`` and ``naturalWidth > 0``), and a
full-page screenshot is saved. ``make test`` installs Debian's ``chromium`` when missing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    """Path of a Chromium-family browser (``$FRACRISK_CHROMIUM`` first), or None."""
    explicit = os.environ.get("FRACRISK_CHROMIUM")
    if explicit:
        return explicit
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@dataclass
class PageReport:
    """What loading a page produced."""

    images: list[dict]
    console_errors: list[str] = field(default_factory=list)
    title: str = ""
    screenshot: Path | None = None


class _DevTools:
    def __init__(self, url: str) -> None:
        import websocket

        self.socket = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"DevTools {method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout:g} s")
            self.events.append(json.loads(self.socket.recv()))

    def close(self) -> None:
        self.socket.close()


def _errors(events: list[dict]) -> list[str]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            found.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            found.append(f"{params['entry'].get('source')}: {params['entry'].get('text')}")
    return found


def load_page(html: Path, screenshot: Path, *, width: int = 1280) -> PageReport:
    """Load ``html`` in headless Chromium; check images and errors; save a screenshot."""
    browser = find_chromium()
    if browser is None:
        raise RuntimeError(
            "no Chromium found: install Debian's `chromium` (make test does this) or set "
            "FRACRISK_CHROMIUM to a Chromium-family browser"
        )
    profile = Path(tempfile.mkdtemp(prefix="fracrisk-chromium-"))
    process = subprocess.Popen(
        [
            browser,
            "--headless=new",
            "--no-sandbox",  # tests may run as root in a container
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{browser} did not start (exit code {process.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            targets = json.loads(r.read())
        page = next(t for t in targets if t.get("type") == "page")
        tools = _DevTools(page["webSocketDebuggerUrl"])
        try:
            for domain in ("Page", "Runtime", "Log"):
                tools.call(f"{domain}.enable")
            tools.call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            tools.call("Page.navigate", url=html.resolve().as_uri())
            tools.wait_for("Page.loadEventFired")
            probe = (
                "JSON.stringify({title: document.title, images: Array.from(document.images)"
                ".map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth, "
                "height: i.naturalHeight, src: i.src.slice(0, 30)})), "
                "height: document.documentElement.scrollHeight})"
            )
            state = json.loads(
                tools.call("Runtime.evaluate", expression=probe, returnByValue=True)["result"][
                    "value"
                ]
            )
            tools.call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=int(state["height"]),
                deviceScaleFactor=1,
                mobile=False,
            )
            shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            errors = _errors(tools.events)
        finally:
            tools.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)
    return PageReport(
        images=state["images"], console_errors=errors, title=state["title"], screenshot=screenshot
    )
