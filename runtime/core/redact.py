"""Nothing secret leaves in a file, a page, a message or a log line: the one redaction every output uses.

    redact("rtsp://bob:pw@cam/live?token=abc")    # 'rtsp://bob:***@cam/live?token=***'
    redact_argv(["--serve-token", "T", "--mqtt", "mqtt://u:p@h/t"])   # ['--serve-token', '***', '--mqtt', 'mqtt://u:***@h/t']

What counts as secret: a URL's password (its user name is kept, so a reader can tell which account ran), the value
of a `token=`, `access_token=`, `password=`, `key=` or `secret=` query parameter, an `Authorization: Bearer`
value, and the value of a secret option (`--serve-token`, `--mqtt-password`...). A URL's user alone, without a
password, is no secret. Applied to free text (a log line, an error, a command line) it finds the URLs in it.
Imports nothing of ours."""
from __future__ import annotations

import logging
import re

MASK = "***"
SECRET_OPTIONS = ("--serve-token", "--mqtt-password", "--password", "--token")  # their value is the secret
SECRET_QUERY = ("token", "access_token", "password", "passwd", "pass", "key", "secret", "auth", "sig", "signature")

# scheme://[user[:password]@]rest ; the userinfo ends at the first / ? # or space after it
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s:/?#@]*):(?P<pw>[^\s/?#]*)@")  # greedy: a password may hold an @
_QUERY = re.compile(r"(?P<key>[?&;](?:" + "|".join(SECRET_QUERY) + r")=)(?P<value>[^&#\s'\"]*)", re.IGNORECASE)
_BEARER = re.compile(r"(?P<key>\bBearer\s+)(?P<value>[^\s'\"]+)", re.IGNORECASE)


def redact(text) -> str:
    """`text` (a URL, a log line, a command line) with every password, token and secret query value masked."""
    text = str(text)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@" if m["pw"] or m["user"] else m[0], text)
    text = _QUERY.sub(lambda m: m["key"] + (MASK if m["value"] else ""), text)
    return _BEARER.sub(lambda m: m["key"] + MASK, text)


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with the values of secret options masked (`--serve-token T` and `--serve-token=T`), and
    every URL in it redacted."""
    out, hide = [], False
    for arg in map(str, argv):
        name, eq, _ = arg.partition("=")
        if hide:
            out.append(MASK)
        elif eq and name in SECRET_OPTIONS:
            out.append(f"{name}={MASK}")
        else:
            out.append(redact(arg))
        hide = not eq and arg in SECRET_OPTIONS
    return out


def redact_doc(doc):
    """A JSON-able document (a summary, a payload) with every string in it redacted (keys kept)."""
    if isinstance(doc, str):
        return redact(doc)
    if isinstance(doc, dict):
        return {k: redact_doc(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [redact_doc(v) for v in doc]
    return doc


class RedactFilter(logging.Filter):
    """On a log handler: every line it writes is redacted (a library or a message of ours naming a URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True
