"""The entry point the daemon calls: one :class:`ModelClient` per configured endpoint.

A client speaks its endpoint's API through the adapter a plugin registered for the
endpoint's ``provider`` (the built-ins: :mod:`corral.plugins.model_providers`). It owns
its endpoint's pooled HTTP client and circuit breaker (pass a breaker in to keep its
state across a config reload) and runs each call as: build the provider request, then up
to ``retry_attempts`` tries, each one waiting out any Retry-After hold, asking the breaker
for leave, sending, and telling the breaker how it went. The daemon sees every try
through ``on_attempt`` and every breaker transition through ``on_breaker_change``; the
call returns a :class:`~corral.models.types.Response` or raises one
:class:`~corral.models.errors.ModelError`.

A try that timed out or lost its connection while the host slept (a Mac Mini idle-sleeping
with a call in flight, a laptop lid closed) is the host's doing, not the endpoint's: it is
neutral for the breaker and does not count against ``retry_attempts`` (see
:class:`~corral.models.retry.RetryStop` for the bound).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType

import httpx
from tenacity import AsyncRetrying, retry_if_exception

from corral.breaker import BreakerChange, BreakerOpen, CircuitBreaker, Permit
from corral.models.endpoint import Endpoint
from corral.models.errors import ModelError
from corral.models.http import new_client, post, request_id, status_error
from corral.models.provider import Adapter, HttpCall
from corral.models.retry import RetryStop, RetryWait, Timing, TryLog, should_retry
from corral.models.tries import SLEEP_THRESHOLD, Try
from corral.models.types import Request, Response
from corral.retrypolicy import retry_after_seconds

_BREAKER_FAILURES = frozenset({"server_error", "overloaded", "timeout", "connection", "bad_response"})
_BREAKER_NEUTRAL = frozenset({"rate_limited", "conflict", "retry_after_too_long"})
_CUT_BY_SLEEP = frozenset({"timeout", "connection"})  # with no answer: an HTTP 408 or 503 is the endpoint's


class ModelClient:
    """Calls one endpoint with retries, a shared breaker and a pooled connection; ``aclose()`` when done."""

    def __init__(
        self,
        endpoint: Endpoint,
        adapter: Adapter,
        *,
        breaker: CircuitBreaker | None = None,
        on_breaker_change: Callable[[BreakerChange], None] | None = None,
        timing: Timing | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.adapter = adapter
        self.timing = timing or Timing()
        self.breaker = breaker or CircuitBreaker(
            endpoint.name,
            failures=endpoint.breaker_failures,
            cool_down=endpoint.breaker_cool_down,
            clock=self.timing.monotonic,
            on_change=on_breaker_change,
            label=f"model endpoint {endpoint.name!r}",
        )
        self._http = new_client(endpoint, transport)

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    async def call(
        self,
        request: Request,
        *,
        on_attempt: Callable[[Try], None] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Ask the model; retry what is transient; raise one ModelError (with ``attempts``) when it cannot be had.

        ``on_attempt`` is called after each try with how it went and how long the client
        will wait before the next one, before that wait starts. It must not raise: an
        exception from it ends the call. ``headers`` are added to every try (the call's
        W3C ``traceparent``, :mod:`corral.traceids`).
        """
        call = self.adapter.build(self.endpoint, request)
        if headers:
            call = HttpCall(call.path, {**call.headers, **headers}, call.body)
        log = TryLog(self.endpoint.name, on_attempt, self.timing.slept)
        endpoint = self.endpoint
        retrying = AsyncRetrying(
            stop=RetryStop(endpoint.retry_attempts, log),
            wait=RetryWait(endpoint.retry_initial_wait, endpoint.retry_max_wait, self.timing.random),
            retry=retry_if_exception(should_retry),
            sleep=self.timing.sleep,
            before_sleep=log.before_sleep,
            reraise=True,
        )
        try:
            response: Response = await retrying(self._attempt, call, log)
        except ModelError as exc:
            log.finish()
            raise self._final(exc, log) from None
        log.finish()
        return response

    async def _attempt(self, call: HttpCall, log: TryLog) -> Response:
        clock = self.timing.monotonic
        started = clock()
        number = log.next_number
        try:
            permit = await self.breaker.acquire(max_hold=self.endpoint.max_retry_after, sleep=self.timing.sleep)
        except BreakerOpen as refused:
            exc = ModelError(
                refused.message,
                kind=refused.kind,
                retryable=True,
                endpoint=self.endpoint.name,
                retry_after=refused.retry_after,
            )
            log.record(self._attempt_record(number, started, 0.0, exc))
            raise exc from None
        try:
            status, response = await self._send(call)
        except ModelError as exc:
            slept = self._slept_through(exc, log.slept_since_last())
            if slept:
                self.breaker.record_neutral(permit)
            else:
                self._settle(permit, exc)
            log.record(self._attempt_record(number, started, permit.held, exc, slept))
            raise
        except BaseException:
            self.breaker.record_neutral(permit)
            raise
        self.breaker.record_success(permit)
        elapsed = clock() - started
        name = self.endpoint.name
        log.record(Try(name, number, status, None, None, elapsed, permit.held, request_id=response.request_id))
        return response

    async def _send(self, call: HttpCall) -> tuple[int, Response]:
        reply = await post(self._http, self.endpoint, call)
        if 200 <= reply.status < 300:
            return reply.status, self.adapter.parse(self.endpoint, reply.body, reply.headers)
        wait = retry_after_seconds(reply.headers, self.timing.wall())
        provider_id = request_id(reply.headers)
        error = status_error(self.endpoint, reply, retry_after=wait, request_id=provider_id, path=call.path)
        if wait is not None and error.retryable:
            self.breaker.hold(wait, f"HTTP {reply.status} with Retry-After {wait:g} s")
            if wait > self.endpoint.max_retry_after:
                raise self._too_long(error, wait)
        raise error

    def _too_long(self, error: ModelError, wait: float) -> ModelError:
        return ModelError(
            f"model endpoint {self.endpoint.name!r} answered HTTP {error.status} and asked to wait {wait:.0f} s,"
            f" longer than [models.{self.endpoint.name}] max_retry_after ({self.endpoint.max_retry_after:g} s), so"
            " corral gives up on this call now. Try again later, or raise max_retry_after.",
            kind="retry_after_too_long",
            retryable=True,
            endpoint=self.endpoint.name,
            status=error.status,
            retry_after=wait,
            request_id=error.request_id,
        )

    def _settle(self, permit: Permit, error: ModelError) -> None:
        if error.kind in _BREAKER_FAILURES:
            self.breaker.record_failure(permit, error.message)
        elif error.kind in _BREAKER_NEUTRAL:
            self.breaker.record_neutral(permit)
        else:  # the endpoint answered deliberately (400, 401, 404): it is up
            self.breaker.record_success(permit)

    @staticmethod
    def _slept_through(error: ModelError, slept: float) -> float:
        """``slept`` when the host's sleep explains ``error`` (no answer, and a real sleep), else 0."""
        cut = error.status is None and error.kind in _CUT_BY_SLEEP
        return slept if cut and slept > SLEEP_THRESHOLD else 0.0

    def _attempt_record(self, number: int, started: float, held: float, error: ModelError, slept: float = 0.0) -> Try:
        message = error.message
        if slept:
            message += (
                f" The host slept {slept:.0f} s during this try or the wait before it, so the endpoint"
                " is not blamed for it."
            )
        return Try(
            self.endpoint.name,
            number,
            error.status,
            error.kind,
            message,
            self.timing.monotonic() - started,
            held,
            retry_after=error.retry_after,
            request_id=error.request_id,
            slept=slept,
        )

    def _final(self, error: ModelError, log: TryLog) -> ModelError:
        message = error.message
        if len(log.attempts) > 1:
            message = (
                f"model endpoint {self.endpoint.name!r} failed {len(log.attempts)} times"
                f" (waited {log.waited:.1f} s between tries{self._sleep_note(log)}); the last: {message}"
            )
        if error.retryable:
            message += " The same call can succeed later, so a run that stopped on this can be resumed."
        return ModelError(
            message,
            kind=error.kind,
            retryable=error.retryable,
            endpoint=self.endpoint.name,
            status=error.status,
            retry_after=error.retry_after,
            request_id=error.request_id,
            attempts=log.attempts,
        )

    def _sleep_note(self, log: TryLog) -> str:
        slept = [attempt.slept for attempt in log.attempts if attempt.slept]
        if not slept:
            return ""
        note = f"; the host slept through {len(slept)} of them, {sum(slept):.0f} s in all"
        allowed = self.endpoint.retry_attempts
        if len(slept) > allowed:
            note += (
                f", and a call gets at most retry_attempts ({allowed}) extra tries for that; keep the host"
                " awake while runs are active ([corral] keep_awake)"
            )
        return note
