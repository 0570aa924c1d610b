"""Who may use a network-facing server: one token for the browser preview (`fer-edge --serve`) and the HTTP
API (`fer-edge serve-api`), the Jupyter way.

The token comes from `--serve-token-file FILE` (its first line) or `--serve-token TOKEN` (not both), else from
`$FER_EDGE_SERVE_TOKEN`; an empty one is an error, never an open server, and so is one shorter than MIN_TOKEN
characters; a token file every user can read is used with a warning. A server bound beyond loopback
without one makes a random token for the run and prints the URL that carries it, once, on stderr;
`--no-token` is the only way to serve open, with a warning on every start. A server on loopback without a
token stays open, as it always was. Both servers take the token either way: `?token=T` in the URL (what a
browser can carry: the page passes it on to its stream) or an `Authorization: Bearer T` header (what a
script should send: it stays out of URLs and logs); the header wins when both are there. A wrong or
missing token gets a bare 401, the same either way; refusals are logged with the client's address, at most
LOG_BURST lines per LOG_WINDOW seconds, so a flood of bad requests cannot flood the log.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from fer_edge.runtime.core.errors import FerEdgeError

log = logging.getLogger("fer_edge.runtime")

TOKEN_ENV = "FER_EDGE_SERVE_TOKEN"
NO_TOKEN_FLAG = "--no-token"
MIN_TOKEN = 16  # characters: a shorter token is guessed by a script (secrets.token_urlsafe(24) makes 32)
LOG_BURST, LOG_WINDOW = 5, 60.0  # refusals logged per window; the rest are counted and reported later
WWW_AUTHENTICATE = ("WWW-Authenticate", 'Bearer realm="fer-edge"')


def read_token(token: str | None = None, token_file: str | None = None) -> str | None:
    """The token from --serve-token-file, --serve-token or $FER_EDGE_SERVE_TOKEN, in that order (None: none).
    An empty one (an unset shell variable, `serve_token = ""`) is an error, never a server without a token."""
    shared = 0  # a token file's permission bits for every other user
    if token is not None and token_file:
        raise FerEdgeError("give --serve-token or --serve-token-file, not both")
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token, where = f.readline().strip(), f"--serve-token-file {token_file}"
                shared = os.fstat(f.fileno()).st_mode & 0o007  # others' bits (a group like fer-edge's may read)
        except (OSError, UnicodeDecodeError) as exc:
            raise FerEdgeError(f"--serve-token-file {token_file}: cannot read it "
                               f"({getattr(exc, 'strerror', None) or exc})") from None
    elif token is not None:
        token, where = token.strip(), "--serve-token"
    elif TOKEN_ENV in os.environ:
        token, where = os.environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}"
    else:
        return None
    if not token:
        raise FerEdgeError(f"{where} is empty (an unset variable?): expected a token; give none to have one "
                           f"made for the run, or {NO_TOKEN_FLAG} to serve without one")
    if len(token) < MIN_TOKEN:
        raise FerEdgeError(f"{where}: expected a token of {MIN_TOKEN} characters or more, found {len(token)} (make "
                           "one with: python -c \"import secrets; print(secrets.token_urlsafe(32))\")")
    if token_file and shared:
        log.warning("--serve-token-file %s can be read by every user of this machine: chmod 600 %s (or 640 with "
                    "the service's group)", token_file, token_file)
    return token


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class FailureLog:
    """Refused requests, logged with the client's address: at most `burst` lines per `window` seconds; the
    ones left out are counted and the count goes with the next line logged."""

    def __init__(self, burst: int = LOG_BURST, window: float = LOG_WINDOW, clock=time.monotonic):
        self.burst, self.window, self.clock = burst, window, clock
        self._lock = threading.Lock()
        self._start, self._count, self._left_out = None, 0, 0

    def __call__(self, server: str, client: str, path: str) -> bool:
        """Log one refusal (True) or count it (False)."""
        with self._lock:
            now = self.clock()
            if self._start is None or now - self._start >= self.window:
                self._start, self._count = now, 0
            self._count += 1
            if self._count > self.burst:
                self._left_out += 1
                return False
            left_out, self._left_out = self._left_out, 0
        more = f" ({left_out} more refused and not logged before this)" if left_out else ""
        log.warning("%s: refused %s from %s: no token or a wrong one%s", server, ascii(path[:200]), client, more)
        return True


@dataclass(frozen=True)
class Access:
    """The token a server requires (None: open), whether this run made it, and whether --no-token said so."""
    token: str | None = field(default=None, repr=False)
    generated: bool = False
    no_token: bool = False
    failures: FailureLog = field(default_factory=FailureLog, compare=False, repr=False)

    def allows(self, query: str, authorization: str | None) -> bool:
        """Whether a request with this query string and Authorization header may pass (constant-time)."""
        if self.token is None:
            return True
        if authorization and authorization[:7].lower() == "bearer ":
            given = authorization[7:].strip()
        else:
            given = urllib.parse.parse_qs(query).get("token", [""])[0]
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode())

    def refused(self, server: str, client: str, path: str) -> None:
        self.failures(server, client, path)

    def url(self, base: str, path: str = "/") -> str:
        """`base + path`, with `?token=` when a token is required."""
        query = f"?token={urllib.parse.quote(self.token, safe='')}" if self.token else ""
        return f"{base.rstrip('/')}{path}{query}"

    def announce(self, server: str, base: str, path: str = "/") -> None:
        """What a start says about access: the URL with a token made for this run (printed once, on
        stderr), or the warning of an open server."""
        if self.generated:
            print(f"fer-edge: {server}: no token was given, so this run made one; open {self.url(base, path)} "
                  f"(scripts: send it as 'Authorization: Bearer'; set a fixed one with --serve-token-file)",
                  file=sys.stderr, flush=True)
        elif self.no_token:
            log.warning("%s: %s: %s answers anyone who can reach it, without a token", server, NO_TOKEN_FLAG, base)


def access_for(host: str, token: str | None = None, token_file: str | None = None,
               no_token: bool = False) -> Access:
    """The access rule of a server bound to `host`, from the token options (FerEdgeError for an empty or
    unreadable token, or a token together with --no-token)."""
    given = read_token(token, token_file)
    if no_token:
        if given is not None:
            where = "--serve-token-file" if token_file else "--serve-token" if token is not None else f"${TOKEN_ENV}"
            raise FerEdgeError(f"{NO_TOKEN_FLAG} and {where} both given: expected one of them")
        return Access(no_token=True)
    if given is not None:
        return Access(token=given)
    if is_loopback(host):
        return Access()  # this machine only: open, as it always was
    return Access(token=secrets.token_urlsafe(24), generated=True)


def base_url(host: str, port: int) -> str:
    """http://HOST:PORT as another machine would type it (this machine's name for a wildcard address)."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname() or host
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"
