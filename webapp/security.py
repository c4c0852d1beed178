"""Request checks of the review app (a pure ASGI middleware, so it also covers static files).

* **Host check** (without a token): only loopback hosts are served (``localhost`` and the
  loopback IP literals, :func:`is_loopback`), which defeats DNS-rebinding pages that would
  otherwise reach ``127.0.0.1`` as "same origin". The CLI asks the same function whether
  an address may be served without a token, so every address it serves is accepted.
* **Token** (when set, always when serving beyond loopback): every request must carry it
  as ``?token=``, an ``Authorization: Bearer`` / ``X-Labelaudit-Token`` header, or the
  ``labelaudit_token`` cookie that a request with the token in the query sets.
* **Same origin** for state-changing methods: a browser's ``Origin`` (or
  ``Sec-Fetch-Site``) must show the request comes from this app's own pages.
* **Headers**: a strict Content-Security-Policy (scripts and styles only from
  ``/static``), ``nosniff``, no framing, no referrer.
* **Body size** (:class:`BodyLimitMiddleware`): a request body over :data:`MAX_BODY_BYTES`
  is refused with 413, whether it announces its length or is sent in chunks.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "labelaudit_token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# FastAPI's /docs and /redoc pages load Swagger UI / ReDoc from a CDN with inline scripts.
DOCS_CSP = (
    "default-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "worker-src blob:; frame-ancestors 'none'"
)


#: Largest request body accepted (a decision is well under 1 KiB; a batch of 5,000 ids ~60 KiB).
MAX_BODY_BYTES = 1 << 20


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (``127.0.0.0/8``, ``::1``, ``[::1]``).

    The one definition of "served without a token": the CLI refuses to serve anything else
    without one, and the app accepts exactly these ``Host`` names when it has none. An IP
    literal cannot be re-pointed by DNS, so accepting any loopback literal keeps DNS
    rebinding out.
    """
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, *, token: str | None, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = {h.lower() for h in allowed_hosts}

    def _token_ok(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method = scope["method"].upper()
        host = headers.get("host", "")
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        set_cookie = False

        if self.token is None:
            name = _host_name(host)
            if name not in self.allowed_hosts and not is_loopback(name):
                await PlainTextResponse("Host not allowed", status_code=421)(scope, receive, send)
                return
        else:
            auth = headers.get("authorization", "")
            presented = [
                query.get("token"),
                headers.get("x-labelaudit-token"),
                auth[7:] if auth.lower().startswith("bearer ") else None,
                _cookie(headers.get("cookie", ""), COOKIE),
            ]
            if not any(self._token_ok(p) for p in presented):
                await PlainTextResponse(
                    "Forbidden: this labelaudit server needs its access token "
                    "(open the URL printed by `labelaudit review`).",
                    status_code=403,
                )(scope, receive, send)
                return
            if self._token_ok(query.get("token")):
                set_cookie = True
                if method == "GET" and headers.get("sec-fetch-mode") == "navigate":
                    # keep the token out of the address bar and history
                    rest = urlencode([(k, v) for k, v in parse_qsl(
                        scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True) if k != "token"])
                    response = RedirectResponse(scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else ""),
                                                status_code=303)
                    response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
                    await response(scope, receive, send)
                    return

        if method not in SAFE_METHODS and not _same_origin(headers, scope):
            await PlainTextResponse("Cross-origin request refused", status_code=403)(scope, receive, send)
            return

        docs = scope["path"] in ("/docs", "/redoc", "/docs/oauth2-redirect")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                h.setdefault("content-security-policy", DOCS_CSP if docs else CSP)
                h.setdefault("x-content-type-options", "nosniff")
                h.setdefault("x-frame-options", "DENY")
                h.setdefault("referrer-policy", "no-referrer")
                h.setdefault("cross-origin-resource-policy", "same-origin")
                if set_cookie:
                    h.append("set-cookie", f"{COOKIE}={self.token}; HttpOnly; Path=/; SameSite=Strict")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _same_origin(headers: Headers, scope: Scope) -> bool:
    """True unless the browser says the request comes from another site.

    Browsers send ``Origin`` with every POST (and ``Sec-Fetch-Site``); requests without
    either come from non-browser clients (curl, scripts), which no web page can forge.
    """
    origin = headers.get("origin")
    site = headers.get("sec-fetch-site")
    if origin == "null" and site is not None:
        # a form POST from a page served with "Referrer-Policy: no-referrer" carries
        # "Origin: null"; the browser's own Sec-Fetch-Site (no page can set it) decides
        return site == "same-origin"
    if origin is not None:
        scheme = scope.get("scheme", "http")
        return origin.lower() == f"{scheme}://{headers.get('host', '')}".lower()
    if site is not None:
        return site in ("same-origin", "none")
    return True


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 (announced or chunked).

    A ``Content-Length`` over the limit is answered at once; otherwise the body is counted
    as the app reads it, and reading past the limit raises a 413 ``HTTPException`` (turned
    into the response by the app, or here if it escapes before a response started).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        return JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except HTTPException as exc:
            if exc.status_code != 413 or started:
                raise
            await self._too_large()(scope, receive, send)
