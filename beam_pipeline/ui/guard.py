"""What keeps another web site from acting through the UI.

Three checks, each sufficient against a different attack:

- **Host** (every request): a browser tricked by DNS rebinding sends the attacker's name in
  `Host`, so only names the UI was told about pass (`localhost`, the `--host` it binds to,
  `--allowed-host`); IP literals pass because no DNS stands between the browser and them.
- **Origin** (state-changing requests): a form posted from another page carries that page's
  `Origin` (or at least its `Referer`); it must be this UI's own scheme, host and port.
  `Sec-Fetch-Site`, where the browser sends it, must say `same-origin` or `none`.
- **Token** (state-changing requests): the review form carries a per-process secret that a
  page on another site cannot read, so a POST without it is refused even from a client that
  sends neither Origin nor Referer.

Pages also forbid being framed (clickjacking the Approve button).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_NAMES = frozenset({"localhost"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
FRAME_HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
_DEFAULT_PORT = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def split_host(value: str) -> tuple[str, int | None]:
    """`Host`-header syntax to (lower-case name without a trailing dot, port or None)."""
    value = value.strip().lower()
    port: str | None = None
    if value.startswith("["):  # [v6]:port
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:
        name = value
    try:
        number = int(port) if port else None
    except ValueError:
        number = -1  # unparseable: matches no origin
    return name.rstrip("."), number


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_names(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The host names the UI answers to besides IP literals."""
    names = set(LOCAL_NAMES) | {split_host(h)[0] for h in extra if h}
    if bind_host not in WILDCARD_BINDS and not is_ip(bind_host):
        names.add(split_host(bind_host)[0])
    return frozenset(names)


def host_allowed(host: str | None, names: frozenset[str]) -> bool:
    """A request without `Host` is not a browser's; one with a name must be a known name."""
    if not host:
        return True
    name, _ = split_host(host)
    return is_ip(name) or name in names


class HostGuard:
    """ASGI middleware: 403 for a `Host` that is not one of `names` (DNS rebinding)."""

    def __init__(self, app: ASGIApp, names: frozenset[str]) -> None:
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = Headers(scope=scope).get("host")
            if not host_allowed(host, self.names):
                name = split_host(host or "")[0]
                resp = PlainTextResponse(
                    f"this UI does not answer to the host name {name!r}; if browsers reach it "
                    f"by that name, start it with --allowed-host {name}",
                    status_code=403,
                )
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _origin_key(url: str) -> tuple[str, str, int | None] | None:
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORT or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.scheme, parts.hostname.rstrip("."), port or _DEFAULT_PORT[parts.scheme]


def cross_site_reason(scope: Scope) -> str | None:
    """Why a state-changing request did not come from this UI's own pages, or None."""
    headers = Headers(scope=scope)
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {fetch_site!r}"
    scheme = scope.get("scheme", "http")
    name, port = split_host(headers.get("host", ""))
    own = (scheme, name, port or _DEFAULT_PORT.get(scheme))
    for header in ("origin", "referer"):
        value = headers.get(header)
        if value is None:
            continue
        if _origin_key(value) != own:
            return f"{header.title()} {value!r} is not this UI ({scheme}://{headers.get('host')})"
        return None  # the first one present decides
    return None  # neither sent: the token alone decides


class Token:
    """A per-process secret embedded in the UI's forms."""

    def __init__(self) -> None:
        self.value = secrets.token_urlsafe(32)

    def matches(self, sent: str) -> bool:
        return hmac.compare_digest(sent.encode(), self.value.encode())
