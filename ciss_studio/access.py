"""Who may use the studio: anyone on this computer when it listens on loopback, only holders of its token otherwise.

The studio has no user accounts: whoever reaches its port can read the CTs it opens, run the engine and
change bundles. On a non-loopback ``--host`` every request (the page, its static assets and the websocket)
must therefore carry the access token, either as ``?token=`` in the address or as the cookie set when a
page was opened with it; anything else gets HTTP 403 and a short page saying how to get in (docs/studio_access.md).
"""
from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import hdrs, web

from ciss_engine.errors import InputError

TOKEN_ENV = "CISS_STUDIO_TOKEN"
TOKEN_QUERY = "token"
MIN_TOKEN_LENGTH = 16  # 16 URL-safe characters: 96 bits when random, beyond guessing over a network
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]+")  # unreserved in URLs and valid in cookies: no quoting anywhere
GENERATED_TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 43 characters, 256 bits

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REFUSAL_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CISS Studio: access token needed</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto; line-height: 1.5">
<h1 id="ciss-access-refused">CISS Studio: access token needed</h1>
<p>{reason}</p>
<p>Open the full address that <code>ciss-studio</code> printed when it started: it ends in
<code>?token=&hellip;</code>. If someone else runs this studio, ask them for that address.</p>
</body></html>
"""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a ``--host`` value) reaches this computer only: ``localhost``, 127.0.0.0/8 or ``::1``.

    Any other name or address counts as a network bind, including names that happen to resolve to loopback:
    asking for a token there is the safe mistake."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_token(token: str) -> str:
    """``token`` if it can serve as the access token; an InputError that does not repeat it otherwise."""
    if len(token) < MIN_TOKEN_LENGTH or not TOKEN_PATTERN.fullmatch(token):
        raise InputError(
            f"the studio's access token must be at least {MIN_TOKEN_LENGTH} characters of letters, digits, '-', '_', '.' or '~' "
            f"(the one given has {len(token)} characters{'' if TOKEN_PATTERN.fullmatch(token) else ', some of them other ones'})",
            f"leave out --token and {TOKEN_ENV} to have a random token generated and printed, or make one with "
            "`python -c \"import secrets; print(secrets.token_urlsafe())\"`",
        )
    return token


def resolve_token(host: str, given: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The token the studio will require: ``given`` (``--token``), else ``$CISS_STUDIO_TOKEN``, else a random one on a
    network bind; None (no token) on loopback when none was given."""
    chosen = given or environ.get(TOKEN_ENV) or None
    if chosen is not None:
        return check_token(chosen)
    return None if is_loopback(host) else secrets.token_urlsafe(GENERATED_TOKEN_BYTES)


def address_with_token(url: str, token: str | None) -> str:
    """The address to open: ``url`` with ``?token=`` when a token is required (its characters need no quoting)."""
    return f"{url}?{TOKEN_QUERY}={token}" if token else url


class TokenGate:
    """aiohttp middleware in front of every route of the studio's web server (page, assets, websocket).

    A request passes with the token in its query or in the gate's cookie. A page opened with a valid
    ``?token=`` gets the cookie (HttpOnly, SameSite=Strict), so that its assets and its websocket, which
    the browser requests without the query, pass too. The cookie's name derives from the token, so that two
    studios on one host (cookies ignore ports) never overwrite each other's."""

    def __init__(self, token: str, on_refused: Callable[[str], None] | None = None) -> None:
        self._token = check_token(token).encode()
        self.cookie_name = "ciss_studio_" + hashlib.sha256(self._token).hexdigest()[:12]
        self._on_refused = on_refused
        self.installed = False

    def matches(self, candidate: str | None) -> bool:
        """Constant-time comparison with the token (bytes: ``hmac.compare_digest`` refuses non-ASCII text)."""
        return candidate is not None and hmac.compare_digest(candidate.encode(), self._token)

    def install(self, app: web.Application) -> None:
        """Put the gate first among ``app``'s middlewares; must run before the app starts (its list is frozen then)."""
        if not isinstance(app, web.Application):
            raise RuntimeError(f"the studio's access token needs trame's aiohttp backend, not {type(app).__name__}")
        app.middlewares.insert(0, self.middleware)
        self.installed = True

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        by_query = self.matches(request.query.get(TOKEN_QUERY))
        if not (by_query or self.matches(request.cookies.get(self.cookie_name))):
            return self._refuse(request)
        try:
            response = await handler(request)
        except web.HTTPException as answer:  # trame's "/" → "index.html?token=…" redirect is raised
            self._finish(request, answer, by_query)
            raise
        self._finish(request, response, by_query)
        return response

    def _finish(self, request: web.Request, response: web.StreamResponse, by_query: bool) -> None:
        """Keep the token out of Referer headers, and hand the cookie to a page opened with the token; a response
        already sent (the websocket's, whose handler returns when the connection closes) is left alone."""
        if response.prepared:
            return
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if by_query:
            secure = request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
            response.set_cookie(self.cookie_name, self._token.decode(), path="/", httponly=True, samesite="Strict", secure=secure or None)

    def _refuse(self, request: web.Request) -> web.Response:
        given = TOKEN_QUERY in request.query or self.cookie_name in request.cookies
        reason = ("The access token in this address is not this studio's: a studio started again without --token has a new one."
                  if given else "This studio asks for its access token, and this address does not carry it.")
        if self._on_refused is not None:
            self._on_refused(f"CISS Studio: refused {request.method} {request.path} from {request.remote}: "
                             f"{'wrong' if given else 'no'} access token")
        return web.Response(status=403, text=REFUSAL_PAGE.format(reason=html.escape(reason)), content_type="text/html",
                            headers={hdrs.CACHE_CONTROL: "no-store", "Referrer-Policy": "no-referrer"})
