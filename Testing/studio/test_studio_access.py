"""Studio access: a non-loopback ``--host`` requires the access token for the page, its assets and its websocket.

The rule is about the address the studio binds, so the network studio here binds 0.0.0.0 and the tests
reach it through 127.0.0.1; a browser (real Chromium) and raw HTTP/websocket clients (aiohttp) must be
refused without the token and served with it. Loopback, the default, needs no token unless one is given.
"""
from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from studio_browser import Browser, Page
from studio_pages import SESSION_KEY, error_shown, open_paths
from studio_process import StudioProcess, launch_studio, run_studio

from ciss_engine.errors import ExitCode
from ciss_studio.access import TOKEN_ENV, is_loopback, resolve_token

WS_PATH = "ws"  # trame's websocket endpoint (wslink's default)


@pytest.fixture(scope="module")
def network_studio() -> Iterator[StudioProcess]:
    """One studio on 0.0.0.0 with a generated token, shared by the tests that only read from it."""
    studio = launch_studio("test_studio_access_network", "--host", "0.0.0.0")
    yield studio
    studio.stop()


def started_event(studio: StudioProcess) -> dict:
    return next(e for e in studio.seen if e["event"] == "server_started")


def local_address(studio: StudioProcess) -> tuple[str, str | None]:
    """(the studio's root through 127.0.0.1, the token of the address it printed or None)."""
    printed = urlsplit(studio.url)
    return f"http://127.0.0.1:{printed.port}/", parse_qs(printed.query).get("token", [None])[0]


def refusal_shown(page: Page, address: str) -> dict:
    """Open ``address`` in a fresh tab and return what the loaded document is once it is there (status, text, app)."""
    page.open(address)
    page.wait_for(f"location.href === {json.dumps(address)} && document.readyState === 'complete'", 20, f"{address} to load")
    return page.evaluate(
        "({status: performance.getEntriesByType('navigation')[0].responseStatus, text: document.body.innerText,"
        " refused: !!document.querySelector('#ciss-access-refused'), trame: typeof window.trame !== 'undefined',"
        " app: !!document.querySelector('#ciss-workflow')})"
    )


def studio_cookies(page: Page, base: str) -> list[dict]:
    return [c for c in page.call("Network.getCookies", urls=[base])["cookies"] if c["name"].startswith("ciss_studio_")]


async def http_status(base: str, path: str, *, query: dict[str, str] | None = None, cookie: str | None = None) -> int:
    """The status of a GET with exactly the credentials given (no cookie jar carries anything over)."""
    headers = {"Cookie": cookie} if cookie else {}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        async with session.get(base + path, params=query, headers=headers, allow_redirects=False) as response:
            await response.read()
            return response.status


async def websocket_status(base: str, *, query: dict[str, str] | None = None, cookie: str | None = None) -> int:
    """101 when the websocket upgrade to the studio is accepted (then closed at once), else the refusal's HTTP status."""
    headers = {"Cookie": cookie} if cookie else {}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        try:
            async with session.ws_connect(base.replace("http://", "ws://") + WS_PATH, params=query, headers=headers):
                return 101
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status


async def page_cookie_and_asset(base: str, token: str) -> tuple[str, str]:
    """The cookie (``name=value``) the page opened with the token sets, and the path of a script the page loads."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        async with session.get(base + "index.html", params={"token": token}) as response:
            assert response.status == 200, await response.text()
            page = await response.text()
            cookie = response.cookies
    assert len(cookie) == 1, f"the page opened with the token sets one cookie, not {list(cookie)}"
    morsel = next(iter(cookie.values()))
    script = next(part.split('"', 1)[0] for part in page.split('src="')[1:] if part.split('"', 1)[0].endswith(".js"))
    return f"{morsel.key}={morsel.value}", script.removeprefix("./")


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.1.1", True),
                                                ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("studio.example.org", False)])
def test_only_loopback_binds_go_without_a_token(host, loopback):
    assert is_loopback(host) is loopback
    token = resolve_token(host, None, environ={})
    assert (token is None) is loopback, f"{host}: {'no token' if loopback else 'a generated token'} expected"
    if token is not None:
        assert len(token) >= 43 and token != resolve_token(host, None, environ={}), "a fresh 256-bit token at each start"


def test_a_given_token_wins_over_the_environment_and_applies_on_loopback_too():
    given, from_env = secrets.token_urlsafe(), secrets.token_urlsafe()
    assert resolve_token("127.0.0.1", given, environ={TOKEN_ENV: from_env}) == given
    assert resolve_token("127.0.0.1", None, environ={TOKEN_ENV: from_env}) == from_env
    assert resolve_token("0.0.0.0", None, environ={TOKEN_ENV: from_env}) == from_env


@pytest.mark.parametrize("weak", ["short-token", "sixteen chars ok", "ünïcödé-tökén-long"])
def test_a_weak_or_unusable_token_stops_the_start_without_echoing_it(weak):
    completed = run_studio("--host", "0.0.0.0", "--port", "0", "--token", weak, "--progress", "jsonl")
    assert completed.returncode == ExitCode.INPUT_ERROR, completed.stderr[-2000:]
    error = json.loads(completed.stdout.strip().splitlines()[-1])
    assert error["event"] == "error" and "access token" in error["message"] and "16" in error["message"], error
    assert "token_urlsafe" in error["hint"], error
    assert weak not in completed.stdout + completed.stderr, "the error must not repeat the token"


def test_a_network_studio_prints_the_address_with_its_generated_token(network_studio):
    started = started_event(network_studio)
    _, token = local_address(network_studio)
    assert started["token_required"] is True and started["host"] == "0.0.0.0"
    assert token is not None and len(token) >= 43, started["url"]
    network_studio.wait_log(f"open {started['url']} in a web browser")  # printed for people too


def test_a_browser_without_the_token_gets_the_refusal_page_not_the_app(network_studio, browser: Browser, shots: Path):
    base, token = local_address(network_studio)
    wrong = secrets.token_urlsafe(32)
    for name, address, reason in (("no_token", base, "asks for its access token"),
                                  ("wrong_token", f"{base}?token={wrong}", "not this studio's")):
        page = browser.new_page()
        shown = refusal_shown(page, address)
        page.screenshot(shots / f"{name}.png")
        assert shown["status"] == 403 and shown["refused"], shown
        assert reason in shown["text"] and "?token=" in shown["text"], "the page says why and how to get in"
        assert not shown["trame"] and not shown["app"], "nothing of the app is served"
        assert studio_cookies(page, base) == [], "a refused page sets no cookie"
    network_studio.wait_log("refused GET / from 127.0.0.1: no access token")


def test_the_printed_address_opens_the_app_and_its_websocket_answers(network_studio, browser: Browser, tmp_path: Path, shots: Path):
    base, token = local_address(network_studio)
    page = browser.new_page()
    page.open(f"{base}?token={token}")
    page.wait_for_session(SESSION_KEY, "#ciss-workflow")
    # A call through the websocket and the server's answer back: opening a bundle that is not there.
    missing = tmp_path / "no_bundle_here"
    open_paths(page, bundle=missing)
    error_shown(page, contains=str(missing))
    page.screenshot(shots / "with_token.png")

    cookies = studio_cookies(page, base)
    assert len(cookies) == 1 and cookies[0]["value"] == token, cookies
    assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict", "scripts cannot read it, other sites cannot send it"
    assert token not in page.evaluate("document.cookie")

    # Another tab of this browser opens the plain address: the cookie lets the page, its assets and its websocket in.
    again = browser.new_page()
    again.open(base)
    again.wait_for_session(SESSION_KEY, "#ciss-workflow")
    assert urlsplit(again.evaluate("location.href")).query == ""


def test_assets_and_websocket_refuse_raw_clients_without_the_token(network_studio):
    base, token = local_address(network_studio)
    cookie, script = asyncio.run(page_cookie_and_asset(base, token))
    wrong_cookie = f"{cookie.split('=', 1)[0]}={secrets.token_urlsafe(32)}"

    async def statuses() -> dict[str, int]:
        return {
            "page without token": await http_status(base, "index.html"),
            "asset without token": await http_status(base, script),
            "asset with a wrong cookie": await http_status(base, script, cookie=wrong_cookie),
            "asset with the cookie": await http_status(base, script, cookie=cookie),
            "websocket without token": await websocket_status(base),
            "websocket with a wrong token": await websocket_status(base, query={"token": secrets.token_urlsafe(32)}),
            "websocket with a wrong cookie": await websocket_status(base, cookie=wrong_cookie),
            "websocket with the token": await websocket_status(base, query={"token": token}),
            "websocket with the cookie": await websocket_status(base, cookie=cookie),
        }

    assert asyncio.run(statuses()) == {
        "page without token": 403, "asset without token": 403, "asset with a wrong cookie": 403, "asset with the cookie": 200,
        "websocket without token": 403, "websocket with a wrong token": 403, "websocket with a wrong cookie": 403,
        "websocket with the token": 101, "websocket with the cookie": 101,
    }


def test_loopback_serves_without_a_token_by_default(start_studio, browser: Browser):
    studio = start_studio()
    base, token = local_address(studio)
    assert token is None and started_event(studio)["token_required"] is False, studio.url
    page = browser.new_page()
    page.open(base)
    page.wait_for_session(SESSION_KEY, "#ciss-workflow")
    assert asyncio.run(websocket_status(base)) == 101


def test_a_token_given_on_loopback_is_required_there_too(start_studio):
    given = secrets.token_urlsafe()
    studio = start_studio(env={TOKEN_ENV: given})
    base, token = local_address(studio)
    assert token == given, studio.url

    async def statuses() -> tuple[int, int, int, int]:
        return (await http_status(base, "index.html"), await http_status(base, "index.html", query={"token": given}),
                await websocket_status(base), await websocket_status(base, query={"token": given}))

    assert asyncio.run(statuses()) == (403, 200, 403, 101)
