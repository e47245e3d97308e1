"""A real headless Chromium driven over the DevTools protocol (CDP), for the studio's browser tests.

No browser download and no driver: Debian's ``chromium`` is started with a fresh profile and a
debugging port, and the page is driven through CDP with aiohttp's websocket client (aiohttp comes
with trame). Clicks, typing and paint strokes are real input events, dispatched where the element is.
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--remote-debugging-port=0", "--window-size=1400,900",
]
CALL_TIMEOUT_S = 30.0


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class CdpError(RuntimeError):
    pass


class Browser:
    """One Chromium process with its own throw-away profile."""

    def __init__(self, executable: str) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="ciss-chromium-"))
        self.process = subprocess.Popen([executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {self.process.poll()})")
            time.sleep(0.05)
        self.port = int(port_file.read_text().split()[0])
        self.pages: list[Page] = []

    def new_page(self) -> Page:
        """A new tab; its websocket is the page's own CDP endpoint."""
        page = Page(self, f"http://127.0.0.1:{self.port}")
        self.pages.append(page)
        return page

    def close(self) -> None:
        """Kill the browser (as a user closing it, or a crash, would: the server sees the socket drop)."""
        for page in self.pages:
            page.close()
        self.pages.clear()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """A tab driven synchronously: each call runs the CDP exchange on this page's own event loop."""

    def __init__(self, browser: Browser, http_root: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._ids = itertools.count(1)
        self.console_errors: list[str] = []
        self._session, self._ws = self._loop.run_until_complete(self._connect(http_root))
        self.call("Page.enable")
        self.call("Runtime.enable")

    async def _connect(self, http_root: str):
        session = aiohttp.ClientSession()
        async with session.put(f"{http_root}/json/new?about:blank") as response:
            target = await response.json()
        ws = await session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        return session, ws

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self._loop.run_until_complete(asyncio.wait_for(self._call(method, params), CALL_TIMEOUT_S))

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await self._ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                raise CdpError(f"the browser closed the connection during {method}")
            data = json.loads(message.data)
            if data.get("method") == "Runtime.exceptionThrown":
                self.console_errors.append(json.dumps(data["params"]["exceptionDetails"])[:500])
            if data.get("id") == call_id:
                if "error" in data:
                    raise CdpError(f"{method}: {data['error']}")
                return data["result"]

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._loop.run_until_complete(asyncio.wait_for(self._ws.close(), 5))
        except (asyncio.TimeoutError, aiohttp.ClientError):
            pass  # the browser is gone already
        self._loop.run_until_complete(self._session.close())
        self._loop.close()

    # --- page content -------------------------------------------------------------------------
    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression[:80]}: {result['exceptionDetails'].get('text')} {result['result'].get('description', '')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0, what: str = "") -> Any:
        """Poll ``expression`` in the page until it is truthy; fail naming ``what`` and the page's error text."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s:.0f} s for {what or expression}; page says: {self.text('#ciss-status')[:600]}")
            time.sleep(0.1)

    def state(self, key: str) -> Any:
        """A trame state value as the page holds it (the page's copy of the server's state)."""
        return self.evaluate(f"window.trame.state.get({json.dumps(key)})")

    def wait_for_session(self, key: str, selector: str, timeout_s: float = 30.0) -> None:
        """The app's session is up when the server's state arrived over the websocket and the app drew ``selector``
        (the load event fires before either)."""
        self.wait_for(f"!!(window.trame && window.trame.state && window.trame.state.get({json.dumps(key)}) !== undefined"
                      f" && document.querySelector({json.dumps(selector)}))", timeout_s, "the studio's websocket session")

    def text(self, selector: str) -> str:
        """The element's text as written (``textContent``: no CSS upper-casing of buttons), "" when absent."""
        return self.evaluate(f"(document.querySelector({json.dumps(selector)}) || {{textContent: ''}}).textContent") or ""

    def exists(self, selector: str) -> bool:
        return bool(self.evaluate(f"!!document.querySelector({json.dumps(selector)})"))

    def rect(self, selector: str) -> dict[str, float]:
        """The element's box in CSS pixels, after scrolling it into view."""
        found = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null; e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; })()"
        )
        if not found:
            raise CdpError(f"no element {selector} in the page")
        return found

    # --- input --------------------------------------------------------------------------------
    def _mouse(self, kind: str, x: float, y: float, buttons: int) -> None:
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left" if kind != "mouseMoved" or buttons else "none",
                  buttons=buttons, clickCount=1 if kind != "mouseMoved" else 0)

    def click(self, selector: str, timeout_s: float = 30.0) -> None:
        """Wait until the element is enabled, then click its centre with the mouse."""
        self.wait_for(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); return e && !e.disabled; }})()", timeout_s,
                      f"{selector} to be enabled")
        box = self.rect(selector)
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        self._mouse("mouseMoved", x, y, 0)
        self._mouse("mousePressed", x, y, 1)
        self._mouse("mouseReleased", x, y, 0)
        self.wait_idle()

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Until the server answered every call of the page (trame counts them in ``trame__busy``) and the page redrew."""
        self.wait_for("!window.trame.state.get('trame__busy')", timeout_s, "the server to answer")
        self.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(true))))")

    def type_into(self, selector: str, text: str) -> None:
        """Replace an input's text as a user would: click it, select all, type."""
        self.click(selector)
        self.evaluate(f"document.querySelector({json.dumps(selector)}).select()")
        self.call("Input.insertText", text=text)

    def choose(self, selector: str, item: str) -> None:
        """Open a select (a Vuetify menu) and click the item whose text is ``item``."""
        self.click(selector)
        found = json.dumps(item)
        self.wait_for(f"Array.from(document.querySelectorAll('.v-overlay .v-list-item')).some(e => e.textContent.trim() === {found})", 10,
                      f"the item {item}")
        where = (f"(() => {{ const e = Array.from(document.querySelectorAll('.v-overlay .v-list-item')).find(e => e.textContent.trim() === {found});"
                 " const r = e.getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()")
        box, previous = self.evaluate(where), None
        while box != previous:  # the menu slides in: click once it stopped moving
            time.sleep(0.1)
            box, previous = self.evaluate(where), box
        self._mouse("mouseMoved", box["x"], box["y"], 0)
        self._mouse("mousePressed", box["x"], box["y"], 1)
        self._mouse("mouseReleased", box["x"], box["y"], 0)
        self.wait_idle()

    def press(self, key: str) -> None:
        """A key press on the focused element: ``Enter``, ``Escape`` or ``Tab``."""
        code = {"Enter": 13, "Escape": 27, "Tab": 9}[key]
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def drag(self, points: list[tuple[float, float]], pause_s: float = 0.03) -> None:
        """A left-button stroke through ``points`` (page pixels), paced like a hand."""
        (x0, y0), rest = points[0], points[1:]
        self._mouse("mouseMoved", x0, y0, 0)
        time.sleep(pause_s)
        self._mouse("mousePressed", x0, y0, 1)
        for x, y in rest:
            time.sleep(pause_s)
            self._mouse("mouseMoved", x, y, 1)
        time.sleep(pause_s)
        self._mouse("mouseReleased", *points[-1], 0)

    def screenshot(self, path: Path, clip: dict[str, float] | None = None) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
