"""Signed approval links: a URL that opens one approval's page on a phone without a login.

A link is ``{base}/link/{approval}?until={deadline}&sig={mac}``: the HMAC-SHA256 of the
approval id and its deadline (whole seconds) under a key kept in the home
(``console.key``, created 0600 on first use, never logged). It proves the daemon made the
link for that approval, so changing the id or the deadline breaks it, and it dies with the
approval's deadline. A link decides once: the decision it makes is written with the
approval (``link_used``), in the store, so no restart makes it valid again. The same key
makes the CSRF token of the link's own page (bound to a cookie the page sets), since a
phone that opens a link has no session to hold one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import urlencode

KEY_FILE = "console.key"
"""The file in the home that holds the link key (64 hex characters)."""
LINK_PREFIX = "/link/"
"""Where links are served; the only paths besides ``/login`` answered without a session."""


def load_key(home: Path) -> bytes:
    """The link key, made (0600, exclusively, so two processes cannot write two) when missing.

    Raises OSError when the file cannot be read or made; a file that holds no key is an
    error naming it, never replaced silently (every link already sent would die)."""
    path = home / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        text = path.read_text().strip()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) < 32:
            raise ValueError(
                f"{path} does not hold a console link key; delete it and restart corral "
                "(links already sent stop working)"
            ) from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex() + "\n")
    return key


def _mac(key: bytes, *parts: str) -> str:
    digest = hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Links:
    """Makes and checks the links of one console; ``base`` is where a phone reaches it."""

    def __init__(self, key: bytes, base: str) -> None:
        self._key = key
        self.base = base.rstrip("/")

    def signature(self, approval: str, deadline: int) -> str:
        return _mac(self._key, "approval-link", approval, str(deadline))

    def url(self, approval: str, expires: float) -> str:
        """The link to ``approval``, valid until its deadline ``expires``."""
        deadline = int(expires)
        query = urlencode({"until": deadline, "sig": self.signature(approval, deadline)})
        return f"{self.base}{LINK_PREFIX}{approval}?{query}"

    def genuine(self, approval: str, deadline: str, sig: str) -> bool:
        """Whether ``sig`` is this console's signature of ``approval`` and ``deadline``
        (compared in constant time)."""
        if not deadline.isdigit() or len(deadline) > 12:
            return False
        return hmac.compare_digest(self.signature(approval, int(deadline)).encode(), sig.encode())

    def csrf(self, nonce: str) -> str:
        """The CSRF token of a link page whose cookie holds ``nonce``."""
        return _mac(self._key, "link-csrf", nonce)

    def csrf_ok(self, nonce: str | None, token: str | None) -> bool:
        return bool(nonce) and bool(token) and hmac.compare_digest(self.csrf(str(nonce)).encode(), str(token).encode())
