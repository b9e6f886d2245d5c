"""Headless Chromium driven through the DevTools protocol: which images a browser loads on a page.

Debian's ``chromium`` (``scripts/test.sh`` installs it) runs headless at 1280x800 with a fresh profile, its
DevTools port on 127.0.0.1 and every host name but 127.0.0.1 unresolvable, so nothing leaves loopback.
:meth:`HeadlessChromium.images_loaded` opens a page, waits for its load event, scrolls to the bottom in
steps (lazy images load), waits until no request has started for a while, and returns the URLs of every
request of type ``Image`` (``<img>``, CSS backgrounds, posters, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT = 1280, 800
SCROLL = """(async () => {
  for (let y = 0; y < document.documentElement.scrollHeight; y += 400) {
    window.scrollTo(0, y); await new Promise(r => setTimeout(r, 30)); }
  window.scrollTo(0, document.documentElement.scrollHeight);
  return document.documentElement.scrollHeight; })()"""


class BrowserError(RuntimeError):
    pass


class HeadlessChromium:
    """One browser process and one tab; a context manager."""

    def __init__(self, executable: str = CHROMIUM, idle_s: float = 0.5, timeout_s: float = 20.0) -> None:
        self.executable = executable
        self.idle_s = idle_s
        self.timeout_s = timeout_s
        self._profile = Path(tempfile.mkdtemp(prefix="aidetect-chromium-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._ws: websocket.WebSocket | None = None
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> HeadlessChromium:
        if not os.access(self.executable, os.X_OK):
            raise BrowserError(f"{self.executable} is missing: apt-get install chromium (scripts/test.sh does)")
        self._process = subprocess.Popen(
            [self.executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
             f"--user-data-dir={self._profile}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--window-size={WIDTH},{HEIGHT}",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            self._ws = websocket.create_connection(self._page_socket(), timeout=self.timeout_s, suppress_origin=True)
            self._call("Page.enable")
            self._call("Network.enable")
            self._call("Network.setCacheDisabled", cacheDisabled=True)
            self._call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                       mobile=False)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if self._ws is not None:
            self._ws.close()
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)  # the browser and the helpers it started
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)

    def images_loaded(self, url: str) -> set[str]:
        """URLs of the images the page at ``url`` loads at 1280x800, scrolled to the bottom."""
        self._events.clear()
        self._call("Page.navigate", url=url)
        self._wait_for("Page.loadEventFired")
        self._call("Runtime.evaluate", expression=SCROLL, awaitPromise=True)
        self._wait_idle()
        return {e["params"]["request"]["url"] for e in self._events
                if e.get("method") == "Network.requestWillBeSent" and e["params"].get("type") == "Image"}

    # ---- the protocol ----------------------------------------------------------------------------------------

    def _page_socket(self) -> str:
        """The DevTools websocket of the first tab (the port is in the profile's ``DevToolsActivePort``)."""
        port_file = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or (self._process and self._process.poll() is not None):
                raise BrowserError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout_s) as reply:
            targets = json.load(reply)
        return next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")

    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        self._next_id += 1
        call_id = self._next_id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            message = self._receive(deadline - time.monotonic())
            if message is not None and message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
        raise BrowserError(f"{method}: no answer in {self.timeout_s} s")

    def _wait_for(self, event: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        seen = len(self._events)
        while time.monotonic() < deadline:
            if any(e.get("method") == event for e in self._events[seen:]):
                return
            self._receive(deadline - time.monotonic())
        raise BrowserError(f"no {event} in {self.timeout_s} s")

    def _wait_idle(self) -> None:
        """Until no request has started for ``idle_s`` and every started one has finished (or ``timeout_s``)."""
        deadline = time.monotonic() + self.timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            message = self._receive(min(self.idle_s, deadline - time.monotonic()))
            if message is not None and message.get("method") == "Network.requestWillBeSent":
                quiet_since = time.monotonic()
            if time.monotonic() - quiet_since >= self.idle_s and not self._in_flight():
                return

    def _in_flight(self) -> int:
        started = {e["params"]["requestId"] for e in self._events if e.get("method") == "Network.requestWillBeSent"}
        ended = {e["params"]["requestId"] for e in self._events
                 if e.get("method") in ("Network.loadingFinished", "Network.loadingFailed")}
        return len(started - ended)

    def _receive(self, timeout_s: float) -> dict[str, Any] | None:
        assert self._ws is not None
        self._ws.settimeout(max(0.01, timeout_s))
        try:
            message = json.loads(self._ws.recv())
        except websocket.WebSocketTimeoutException:
            return None
        if "method" in message:
            self._events.append(message)
        return message
