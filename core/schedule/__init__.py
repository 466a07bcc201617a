"""Scheduling: triggers, the run queue and its policies, pauses (docs/scheduling.md).

Plugin authors adding a trigger kind need :class:`TimedTrigger` or :class:`EventTrigger`,
:class:`BuildContext` and :class:`TriggerEnv`; the rest is the daemon's.
"""

from corral.schedule.clock import Clock, ManualClock
from corral.schedule.triggers import BuildContext, EventTrigger, TimedTrigger, Trigger, TriggerEnv

__all__ = ["BuildContext", "Clock", "EventTrigger", "ManualClock", "TimedTrigger", "Trigger", "TriggerEnv"]
