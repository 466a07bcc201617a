"""``--since`` and ``--until`` as an operator writes them: a duration back from now (``2h``,
``7d``) or a date and time (``2027-01-04T07:00``, local unless it names a zone).

The filters of ``corral runs``, ``corral logs`` and ``corral alerts`` take them; a bad one
is a usage error with an example of each form.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from corral.cli.common import EXIT_USAGE, Exit
from corral.config.units import format_duration, local_zone, parse_duration


@dataclass(frozen=True)
class Moment:
    """A point in time given on the command line, and how to say it back."""

    at: float
    """Epoch seconds."""
    ago: float | None = None
    """Seconds before now, when it was given as a duration."""

    def since(self) -> str:
        """``in the last 2h`` or ``since 2027-01-04 07:00:00 CET``."""
        return f"in the last {format_duration(self.ago)}" if self.ago is not None else f"since {self._shown()}"

    def until(self) -> str:
        """``until 2h ago`` or ``until 2027-01-04 07:00:00 CET``."""
        return f"until {format_duration(self.ago)} ago" if self.ago is not None else f"until {self._shown()}"

    def _shown(self) -> str:
        return dt.datetime.fromtimestamp(self.at, local_zone()).strftime("%Y-%m-%d %H:%M:%S %Z")


def moment(flag: str) -> Callable[[str], Moment]:
    """An argparse type for ``flag``: a duration of more than zero back from now, or a date
    and time in the past (local unless it names a zone)."""
    example = f"e.g. {flag} 2h, {flag} 7d or {flag} 2027-01-04T07:00"

    def parse(text: str) -> Moment:
        now = time.time()
        try:
            ago = parse_duration(text)
        except ValueError:
            ago = None
        if ago is not None:
            if ago <= 0:
                raise argparse.ArgumentTypeError(f"{text!r} must be more than zero; {example}")
            return Moment(now - ago, ago)
        try:
            given = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is neither a duration nor a date and time; {example}") from None
        try:
            at = (given if given.tzinfo else given.replace(tzinfo=local_zone())).timestamp()
        except (OverflowError, ValueError, OSError):
            raise argparse.ArgumentTypeError(f"{text!r} is not a time corral can show; {example}") from None
        if at > now:
            raise argparse.ArgumentTypeError(f"{text!r} is in the future; {example}")
        return Moment(at)

    return parse


def window(since: Moment | None, until: Moment | None) -> None:
    """Refuse a window that ends before it starts (exit 2): it would match nothing, silently."""
    if since is not None and until is not None and until.at < since.at:
        raise Exit(
            EXIT_USAGE,
            "corral: the window ends before it starts (--until is earlier than --since); give the earlier moment "
            "to --since",
        )
