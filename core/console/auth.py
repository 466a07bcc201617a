"""Who may use the console: one-time login tokens, sessions, CSRF tokens, and a limit on
failed logins that only ever refuses credentials that were not genuine.

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
from typing import Any

from corral.observe.quietly import EveryPeriod

LOGIN_TOKEN_TTL = 600.0
"""Seconds a login token printed by ``corral console`` stays usable (once)."""
FAILED_LOGINS = 10
"""Failed logins per :data:`FAILED_WINDOW` answered as such; further ones in the window get
429. A genuine token or link is checked first and always works: a stranger's guesses
(hopeless against 256-bit tokens and HMAC-signed links) must not lock the operator out."""
FAILED_WINDOW = 60.0
FAILURES_LOGGED_EVERY = 60.0
"""Seconds between two log lines counting failed logins."""
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

    def __init__(self, session_max_age: float, log: Any, clock: Callable[[], float] = time.time) -> None:
        self.session_max_age = session_max_age
        self.log = log
        self._logged = EveryPeriod(FAILURES_LOGGED_EVERY, clock)
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

    def failed(self, what: str) -> bool:
        """Count one ``what`` (a login token, an approval link) that was not genuine, logged
        once a minute with a count (never the credential); whether the failures of the last
        minute are now past the limit (the caller then answers 429)."""
        with self._lock:
            now = self._clock()
            self._failures.append(now)
            while self._failures[0] < now - FAILED_WINDOW:
                self._failures.popleft()
            over = len(self._failures) > FAILED_LOGINS
            count = self._logged.due()
        if count:
            self.log.warning(
                "console refused credentials that were not genuine",
                last=what,
                failed=count,
                fix="someone guesses or replays old links; genuine links and `corral console` logins still work",
            )
        return over

    def login(self, token: str) -> Session | None:
        """Spend ``token``: a new session if it was a live token, else None (the caller counts
        it with :meth:`failed`)."""
        with self._lock:
            now = self._clock()
            found = next((t for t in self._tokens if hmac.compare_digest(t.encode(), token.encode())), None)
            until = self._tokens.pop(found, 0.0) if found is not None else 0.0
            if until <= now:
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
