"""Database URLs of the stored-run sources: parsing, credentials and redaction.

Accepted forms (user and password are URL-decoded)::

    mysql://user[:password]@host[:port]/database[?option=value&...]
    postgresql://user[:password]@host[:port]/database[?option=value&...]

`mariadb://` is read as `mysql://`, and `postgres://` as `postgresql://`.
The password comes from the URL, else from the caller (a setting), else
from the environment variable the caller names; it is kept out of `repr`,
and `redacted()` (also `str()`) shows `***` in its place, so a URL can be
logged or printed in an error as it is.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from history.errors import SourceConfigError

Dialect = Literal["mysql", "postgresql"]

_SCHEMES: dict[str, Dialect] = {
    "mysql": "mysql",
    "mariadb": "mysql",
    "postgresql": "postgresql",
    "postgres": "postgresql",
}
DEFAULT_PORTS: dict[Dialect, int] = {"mysql": 3306, "postgresql": 5432}
# The connection options a URL may carry, per dialect: TLS and timeouts. Anything else is a
# usage error rather than silently ignored.
URL_OPTIONS: dict[Dialect, frozenset[str]] = {
    "mysql": frozenset({"ssl_ca", "ssl_cert", "ssl_key", "ssl_verify_cert", "connect_timeout"}),
    "postgresql": frozenset(
        {"sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name"}
    ),
}
ACCEPTED_FORMS = (
    "mysql://user[:password]@host[:port]/database or postgresql://user[:password]@host[:port]/database"
)

_CREDENTIALS = re.compile(r"(://[^/@:]*):[^/@]*@")


@dataclass(frozen=True)
class DatabaseURL:
    """Where a stored-run database lives, parsed from its URL."""

    dialect: Dialect
    host: str
    port: int
    user: str
    database: str
    password: str | None = field(default=None, repr=False)
    options: tuple[tuple[str, str], ...] = ()

    def redacted(self) -> str:
        """The URL with any password shown as `***`: safe for logs, errors and reports."""
        user = quote(self.user, safe="")
        cred = f"{user}:***" if self.password else user
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in self.options)
        return f"{self.dialect}://{cred}@{host}:{self.port}/{quote(self.database, safe='')}" + (
            f"?{query}" if query else ""
        )

    def __str__(self) -> str:
        return self.redacted()

    def hide(self, text: str) -> str:
        """`text` with this URL's password (raw or URL-encoded) replaced by `***`."""
        if not self.password:
            return text
        for secret in {self.password, quote(self.password, safe="")}:
            text = text.replace(secret, "***")
        return text


def redact_raw(url: str) -> str:
    """A possibly malformed URL with its password part hidden, for an error message."""
    return _CREDENTIALS.sub(r"\1:***@", url)


def _bad(url: str, what: str, reason: str) -> SourceConfigError:
    return SourceConfigError(f"invalid {what} URL {redact_raw(url)!r}: {reason}; accepted: {ACCEPTED_FORMS}")


def parse_database_url(
    url: str,
    *,
    what: str,
    password: str | None = None,
    password_env: str | None = None,
    default_database: str | None = None,
) -> DatabaseURL:
    """Parse a stored-run source URL; `what` names the source in errors ("KFP database").

    The password is the URL's, else `password`, else the value of the
    environment variable `password_env` (when set and not empty). Without a
    database in the URL, `default_database` is used. Raises
    SourceConfigError, with the password hidden, for anything else.
    """
    if not isinstance(url, str) or not url.strip():
        raise _bad(str(url), what, "the URL is empty")
    url = url.strip()
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise _bad(url, what, "it has no scheme")
    dialect = _SCHEMES.get(scheme.lower())
    if dialect is None:
        raise _bad(url, what, f"unsupported scheme {scheme!r}")
    parts = urlsplit(url)
    if parts.fragment:
        raise _bad(url, what, "a fragment is not supported")
    try:
        port = parts.port
    except ValueError:
        raise _bad(url, what, "the port must be a number from 1 to 65535") from None
    if port is not None and not 0 < port < 65536:
        raise _bad(url, what, "the port must be a number from 1 to 65535")
    if not parts.hostname:
        raise _bad(url, what, "the host is missing")
    if not parts.username:
        raise _bad(url, what, "the user is missing (scheme://user[:password]@host/database)")
    database = unquote(parts.path.lstrip("/")) or (default_database or "")
    if not database:
        raise _bad(url, what, "the database name is missing")
    if "/" in database:
        raise _bad(url, what, "the database name may not contain '/'")
    try:
        options = tuple(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except ValueError:
        raise _bad(url, what, "the query string cannot be parsed") from None
    unknown = sorted({k for k, _ in options} - URL_OPTIONS[dialect])
    if unknown:
        raise _bad(
            url,
            what,
            f"unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(URL_OPTIONS[dialect]))})",
        )
    secret = unquote(parts.password) if parts.password is not None else None
    if secret is None:
        secret = password
    if secret is None and password_env:
        secret = os.environ.get(password_env) or None
    return DatabaseURL(
        dialect=dialect,
        host=parts.hostname,
        port=port or DEFAULT_PORTS[dialect],
        user=unquote(parts.username),
        database=database,
        password=secret,
        options=options,
    )
