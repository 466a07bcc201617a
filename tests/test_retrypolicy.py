"""A tool's retry policy: how it is written, the waits it gives, and when a failed try is tried again."""

from __future__ import annotations

import asyncio

import pytest

import corral
from corral.retrypolicy import RetryPolicy, next_try, parse_backoff

TRANSIENT = {"transient": True}


def test_a_policy_is_written_as_retries_and_a_backoff() -> None:
    policy = corral.RetryPolicy(retries=2, backoff="500ms..1m", max_retry_after="2m")
    assert (policy.retries, policy.tries, policy.backoff, policy.max_retry_after) == (2, 3, (0.5, 60.0), 120.0)
    assert RetryPolicy(backoff=(1, 30)) == RetryPolicy()
    assert RetryPolicy().describe() == "3 retries, backoff 1s..30s"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries=-1 must be a whole number from 0 to 100"),
        ({"retries": 2.5}, "retries=2.5 must be a whole number"),
        ({"backoff": "30s"}, "'30s' is not a backoff; write \"FIRST..LONGEST\""),
        ({"backoff": "1x..2s"}, "is not a backoff"),
        ({"backoff": "30s..1s"}, "must start above zero and end at or above its start"),
        ({"backoff": "0s..1s"}, "must start above zero"),
        ({"max_retry_after": "soon"}, "max_retry_after: 'soon' is not a duration"),
    ],
)
def test_a_bad_policy_says_what_to_write(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_waits_grow_exponentially_with_full_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(retries=10, backoff="1s..30s")
    assert [policy.wait(n, draw=1.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.wait(3, draw=0.25) == 1.0  # a uniform draw between 0 and the ceiling
    assert policy.wait(1, retry_after=12, draw=0.5) == 12  # the downstream's wait when longer
    assert 0 <= policy.wait(2) <= 2


def test_only_a_transient_failure_that_is_safe_to_repeat_is_retried() -> None:
    policy = RetryPolicy(retries=2)
    assert next_try(policy, number=1, idempotent=True, error=TRANSIENT, draw=0.5).wait == 0.5
    assert next_try(policy, number=1, idempotent=True, error={"transient": False}).wait is None
    assert next_try(None, number=1, idempotent=True, error=TRANSIENT).wait is None
    ambiguous = next_try(policy, number=1, idempotent=False, error=TRANSIENT)
    assert ambiguous.wait is None and "not idempotent" in ambiguous.why_not
    no_effect = {"transient": True, "no_effect": True}
    assert next_try(policy, number=1, idempotent=False, error=no_effect, draw=1.0).wait == 1.0
    last = next_try(policy, number=3, idempotent=True, error=TRANSIENT)
    assert last.wait is None and last.why_not == "gave up after 3 tries (2 retries, backoff 1s..30s)"


def test_retry_after_is_honoured_up_to_max_retry_after() -> None:
    policy = RetryPolicy(max_retry_after=10)
    asked = {"transient": True, "retry_after": 7}
    assert next_try(policy, number=1, idempotent=True, error=asked, draw=0.0).wait == 7
    too_long = next_try(policy, number=1, idempotent=True, error={**asked, "retry_after": 11})
    assert too_long.wait is None and "longer than max_retry_after (10 s)" in too_long.why_not


def test_parse_backoff_reads_durations_on_both_sides() -> None:
    assert parse_backoff("250ms..2s") == (0.25, 2.0)
    assert parse_backoff([2, "1m"]) == (2.0, 60.0)


def test_a_call_on_an_event_loop_retries_with_tenacity() -> None:
    """What an MCP client over HTTP uses: the same policy, as a tenacity loop."""
    tries: list[int] = []
    slept: list[float] = []

    class Unavailable(Exception):
        retry_after = 3.0

    async def call(n: int) -> str:
        tries.append(n)
        if len(tries) < 3:
            raise Unavailable
        return "ok"

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryPolicy(retries=5, backoff="1s..30s")
    retrying = policy.retrying(
        lambda exc: isinstance(exc, Unavailable), retry_after=lambda exc: getattr(exc, "retry_after", None), sleep=sleep
    )
    assert asyncio.run(retrying(call, 7)) == "ok"
    assert tries == [7, 7, 7] and slept == [3.0, 3.0]

    async def broken() -> None:
        raise KeyError("not transient")

    with pytest.raises(KeyError):
        asyncio.run(policy.retrying(lambda exc: isinstance(exc, Unavailable), sleep=sleep)(broken))
    assert len(slept) == 2


def test_tool_error_carries_retryable_and_retry_after() -> None:
    error = corral.ToolError("HTTP 503 from api.example.com", retryable=True, retry_after=5)
    assert isinstance(error, corral.ToolCallError) and error.kind == "failed"
    assert (error.retryable, error.retry_after) == (True, 5.0)
    assert corral.ToolError("HTTP 401").retryable is False
    with pytest.raises(ValueError, match="retry_after=-1 must be seconds"):
        corral.ToolError("x", retry_after=-1)
