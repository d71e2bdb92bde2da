"""Who may talk to the daemon: the Host, Origin, token and Content-Type checks of a request.

On 127.0.0.1 the daemon is in reach of every web page the observer has open. These checks keep
such a page from driving it or reading it, and keep the network out beyond loopback:

- **Host** must name the bound address: the configured host, an IP literal of the address the
  connection arrived on, ``localhost`` or a loopback literal on loopback, or a name of
  ``[server] allowed_hosts``. DNS rebinding gives a foreign page the daemon's origin, but its
  requests still carry the foreign name.
- A **state-changing** request (any method but GET, HEAD and OPTIONS) needs a same-origin or
  no ``Origin`` and ``Content-Type: application/json``. A cross-site page can send neither
  without a CORS preflight, which the daemon never grants; a "simple" cross-site request
  (a form, a ``text/plain`` fetch) is refused before it is read.
- With a **token**, a state-changing request needs it, and beyond loopback every request
  does (pages, the event stream, frame files). It comes as ``Authorization: Bearer <token>``
  (the scheme in any case), or as the password of HTTP Basic (any user name): a browser asks
  for that once and then sends it with every request of the page, the event stream and the
  downloads included.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import re
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from obsctl.config import ServerConfig
from obsctl.web._http import error_response

__all__ = ["access_middleware"]

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PORT = re.compile(r"(?::([0-9]{1,5}))?")
# Basic first: it is the challenge a browser answers with its login prompt.
_CHALLENGES = ('Basic realm="obsctl", charset="UTF-8"', 'Bearer realm="obsctl"')


def _authority(value: str) -> tuple[str, int | None] | None:
    """Split ``host[:port]`` (a Host header, an Origin's authority) into a name and a port.

    The name is lower case without a trailing dot, an IPv6 address without its brackets.
    None when malformed: an IPv6 address needs brackets, a port is 0 to 65535.
    """
    if value.startswith("["):
        name, closed, rest = value[1:].partition("]")
        if not closed:
            return None
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    match = _PORT.fullmatch(rest)
    if not name or match is None:
        return None
    port_number = int(match[1]) if match[1] else None
    if port_number is not None and port_number > 65535:
        return None
    return name.lower().removesuffix("."), port_number


def _address(name: str) -> IPAddress | None:
    """Return the IP address a name spells, IPv4-mapped IPv6 as IPv4; None for a DNS name."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _local_address(request: web.Request) -> IPAddress | None:
    """Return the address the request's connection arrived on."""
    transport = request.transport
    sockname = None if transport is None else transport.get_extra_info("sockname")
    if not isinstance(sockname, tuple) or not sockname:
        return None
    return _address(str(sockname[0]))


def _same_origin(origin: str, host: tuple[str, int | None]) -> bool:
    """Return whether an ``Origin`` header names the server the Host header names.

    The scheme is not compared: behind a TLS proxy the page is https and the daemon plain
    http. A Host without a port is at the default port of the Origin's scheme.
    """
    scheme, separator, rest = origin.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in ("http", "https"):
        return False  # "null" (a sandboxed frame, a file), or not a web origin
    parsed = _authority(rest)
    if parsed is None:
        return False
    default = 443 if scheme == "https" else 80
    return parsed[0] == host[0] and (parsed[1] or default) == (host[1] or default)


@dataclass(frozen=True)
class _Access:
    """The checks for one server configuration (see the module's docstring)."""

    names: frozenset[str]
    addresses: frozenset[IPAddress]
    token: bytes | None
    reads_need_token: bool

    @classmethod
    def of(cls, server: ServerConfig) -> _Access:
        names: set[str] = set()
        addresses: set[IPAddress] = set()
        for entry in (server.host, *server.allowed_hosts):
            name = entry.lower().removesuffix(".").removeprefix("[").removesuffix("]")
            address = _address(name)
            if address is None:
                names.add(name)
            elif not address.is_unspecified:  # 0.0.0.0 names no host; see _host_allowed
                addresses.add(address)
        return cls(
            names=frozenset(names),
            addresses=frozenset(addresses),
            token=server.token.encode() if server.token is not None else None,
            reads_need_token=not server.loopback,
        )

    def host_allowed(self, name: str, local: IPAddress | None) -> bool:
        """Return whether a request whose Host names ``name`` is for this server."""
        if name in self.names:
            return True
        on_loopback = local is not None and local.is_loopback
        address = _address(name)
        if address is None:
            return name == "localhost" and on_loopback
        # An IP literal cannot be rebound: the one the client dialled (a wildcard bind's
        # interfaces), or any loopback one on loopback, is this server.
        return (
            address in self.addresses or address == local or (address.is_loopback and on_loopback)
        )

    def has_token(self, request: web.Request) -> bool:
        """Return whether the request carries the token (Bearer, or as a Basic password)."""
        if self.token is None:
            return True
        scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer":
            # "replace": header text the client sent undecodable cannot match an ASCII token.
            given = credentials.encode("utf-8", "replace")
        elif scheme.lower() == "basic":
            try:
                given = base64.b64decode(credentials, validate=True).partition(b":")[2]
            except (binascii.Error, ValueError):  # not base64, or not even ASCII
                return False
        else:
            return False
        return hmac.compare_digest(given, self.token)

    def refusal(self, request: web.Request) -> web.Response | None:
        """Return the error reply for a request these checks refuse, or None to serve it."""
        hosts = request.headers.getall("Host", [])
        host = _authority(hosts[0].strip()) if len(hosts) == 1 else None
        if host is None:
            return error_response(400, "a request needs one well-formed Host header")
        if not self.host_allowed(host[0], _local_address(request)):
            log.warning("refused a request for host %r (not this server's)", hosts[0])
            return error_response(
                400,
                f"this server does not answer to host {hosts[0]!r}; add the name to "
                "[server] allowed_hosts if it is this machine's",
            )
        changes_state = request.method not in _SAFE_METHODS
        if changes_state:
            origins = request.headers.getall("Origin", [])
            if len(origins) > 1 or (origins and not _same_origin(origins[0].strip(), host)):
                log.warning("refused a cross-origin %s %s", request.method, request.path)
                return error_response(403, "cross-origin requests may not change anything")
        if (changes_state or self.reads_need_token) and not self.has_token(request):
            reply = error_response(401, "a valid token is required: Authorization: Bearer <token>")
            for challenge in _CHALLENGES:
                reply.headers.add("WWW-Authenticate", challenge)
            return reply
        if changes_state and request.content_type != "application/json":
            given = request.headers.get("Content-Type")
            return error_response(
                415,
                "a state-changing request needs Content-Type: application/json, got "
                + ("none" if given is None else repr(given)),
            )
        return None


def access_middleware(server: ServerConfig) -> Middleware:
    """Return the middleware refusing what `ServerConfig` does not allow (see the module)."""
    access = _Access.of(server)

    @web.middleware
    async def check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = access.refusal(request)
        if refusal is not None:
            return refusal
        return await handler(request)

    return check_access
