"""Who may use the console: one-time login tokens, sessions, CSRF tokens, and a limit on
failed logins.

Everything is held in the daemon's memory: a restart logs everyone out, and no token or
session id is ever written to the store or a log. ``corral console`` asks the daemon
(over the control socket, which only the operator's user reaches) for a login token;
opening the URL it prints spends the token and sets a session cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

LOGIN_TOKEN_TTL = 600.0
"""Seconds a login token printed by ``corral console`` stays usable (once)."""
FAILED_LOGINS = 10
"""Failed logins allowed per :data:`FAILED_WINDOW`; more are refused without a check."""
FAILED_WINDOW = 60.0
MAX_SESSIONS = 64
"""Sessions kept at once; the oldest goes when a new login would pass this."""


@dataclass
class Session:
    """One logged-in browser: its cookie value, its CSRF token and when it ends."""

    id: str
    csrf: str
    expires: float

    @property
    def who(self) -> str:
        """How its actions are recorded: ``console session 3f2a9c`` (a digest, never the id itself)."""
        return f"console session {hashlib.sha256(self.id.encode()).hexdigest()[:6]}"

    def csrf_ok(self, given: str | None) -> bool:
        """Whether a form's CSRF token is this session's (compared in constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


class Logins:
    """Login tokens and sessions of one console. Thread-safe: the event loop serves
    requests while the control socket mints tokens."""

    def __init__(self, session_max_age: float, clock: Callable[[], float] = time.time) -> None:
        self.session_max_age = session_max_age
        self._clock = clock
        self._tokens: dict[str, float] = {}
        self._sessions: dict[str, Session] = {}
        self._failures: deque[float] = deque()
        self._lock = threading.Lock()

    def mint(self) -> str:
        """A new one-time login token."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            self._tokens = {t: until for t, until in self._tokens.items() if until > now}
            self._tokens[token] = now + LOGIN_TOKEN_TTL
        return token

    def failed(self) -> None:
        """Count one failed check (a login token or an approval link that was not genuine)."""
        with self._lock:
            self._failures.append(self._clock())

    def throttled(self) -> bool:
        """Whether too many logins failed lately to check another one."""
        with self._lock:
            now = self._clock()
            while self._failures and self._failures[0] < now - FAILED_WINDOW:
                self._failures.popleft()
            return len(self._failures) >= FAILED_LOGINS

    def login(self, token: str) -> Session | None:
        """Spend ``token``: a new session if it was a live token, else None (counted as a
        failed login)."""
        with self._lock:
            now = self._clock()
            found = next((t for t in self._tokens if hmac.compare_digest(t.encode(), token.encode())), None)
            until = self._tokens.pop(found, 0.0) if found is not None else 0.0
            if until <= now:
                self._failures.append(now)
                return None
            session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + self.session_max_age)
            self._sessions[session.id] = session
            while len(self._sessions) > MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
            return session

    def session(self, cookie: str | None) -> Session | None:
        """The live session a cookie names, or None."""
        if not cookie:
            return None
        with self._lock:
            session = self._sessions.get(cookie)
            if session is None:
                return None
            if session.expires <= self._clock():
                del self._sessions[cookie]
                return None
            return session

    def logout(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)
