"""The scheduler: builds each agent's triggers from config, fires them, and decides what a
fire does (a run, or a recorded skip) under pauses, slow-downs and the overlap policy.

Timed schedules keep their state in the ``schedules`` database (:mod:`corral.schedule.state`).
A fire time more than :data:`LATE` past its due time counts as *missed* (the daemon was
down, the machine asleep, or the clock stepped forward), and the agent's ``missed`` policy
decides: skip them, run once, or run each (the latest ``missed_max``); catch-ups are
counted from the last fire that came on time, across restarts, so a daemon restarted
again and again does not catch up again each time. The due time is the nominal fire time
plus a jitter derived from the schedule's key and that time, so it is the same after a
restart.

A fire time is identified by its nominal time on its trigger's clock: the wall clock
(cron, one-shot) or steady time (intervals; :mod:`corral.schedule.timeline`). Each
schedule remembers the spans of wall time whose fire times it has handled, so a clock set
back over them does not run them again, while times it never handled still fire.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from corral.alerts import Alert, Severity
from corral.config import CorralConfig
from corral.config.problems import file_name
from corral.config.schedule import TriggerConfig
from corral.errors import ConfigError
from corral.schedule import progress, state
from corral.schedule.clock import Clock, Reading
from corral.schedule.listener import WebhookServer
from corral.schedule.queue import RunQueue
from corral.schedule.timeline import JumpKind, Timeline
from corral.schedule.triggers import (
    RESOLUTION,
    BuildContext,
    EventTrigger,
    TimedTrigger,
    Trigger,
    TriggerEnv,
    build,
    collect_kinds,
)

if TYPE_CHECKING:
    from corral.schedule.pauses import Pauses
    from corral.schedule.runs import Runs
    from corral.store import Records, Store, Writer

LATE = 60.0
"""Seconds past its due time after which a fire time counts as missed, not late."""
IDLE_WAKE = 3600.0
COUNTED = 1000
"""Missed fire times counted for the log before it says "or more"."""
MAX_SPANS = 16
"""Handled spans of wall time a schedule remembers from before clock steps back (oldest dropped)."""
REBIND_FIRST, REBIND_MAX = 1.0, 30.0
"""Seconds before the first new try to bind a webhook port that was taken at start-up,
doubling up to the most between tries."""


@dataclass
class Schedule:
    """One trigger of one agent, with its stored state."""

    config: TriggerConfig
    trigger: Trigger
    record: dict[str, Any] = field(default_factory=dict)
    fire_at: float | None = None
    """When the next fire time is due, jitter included, on the trigger's clock."""

    @property
    def timed(self) -> TimedTrigger | None:
        return self.trigger if isinstance(self.trigger, TimedTrigger) else None

    @property
    def clock(self) -> str:
        """Which clock its fire times are on: "steady" or "wall"."""
        return "steady" if self.timed is not None and self.timed.steady else "wall"

    def handled(self, moment: float) -> tuple[float, float] | None:
        """The remembered span of handled wall time that ``moment`` falls in, if any."""
        for start, end in self.record.get("covered", ()):
            if start + RESOLUTION < moment <= end + RESOLUTION:
                return start, end
        return None

    def due(self, nominal: float) -> float:
        """``nominal`` plus this schedule's jitter for that time (the same on every restart)."""
        if not self.config.jitter:
            return nominal
        digest = hashlib.sha256(f"{self.config.key}@{nominal:.3f}".encode()).digest()
        return nominal + self.config.jitter * int.from_bytes(digest[:8], "big") / 2**64


def build_all(
    config: CorralConfig, manager: pluggy.PluginManager, environ: Mapping[str, str], warn: Callable[[str], None]
) -> dict[str, tuple[TriggerConfig, Trigger]]:
    """Every enabled agent's triggers, built by their plugins; ConfigError lists every problem."""
    kinds = collect_kinds(manager, warn)
    base_dir = config.path.parent if config.path else Path.cwd()
    problems: list[str] = []
    built: dict[str, tuple[TriggerConfig, Trigger]] = {}
    paths: dict[str, str] = {}
    for agent in config.agents.values():
        if not agent.enabled:
            continue
        for trigger_config in agent.triggers:
            context = BuildContext(
                agent.name,
                trigger_config.key,
                trigger_config.section,
                base_dir,
                environ,
                config.schedule,
                config.zone if config.timezone else None,
                trigger_config.table,
                file_name(config.path),
            )
            try:
                trigger = build(trigger_config, kinds, context)
            except ConfigError as exc:
                problems += exc.problems
                continue
            gap = _shortest_gap(trigger) if trigger_config.jitter else None
            if gap is not None and trigger_config.jitter >= gap:
                problems.append(
                    f"{trigger_config.section} jitter: {trigger_config.jitter:g}s is not shorter than the {gap:g}s "
                    "between its fire times, so fires would overtake each other; make it shorter"
                )
                continue
            path = getattr(trigger, "path", None)
            if trigger_config.kind == "webhook" and isinstance(path, str):
                if path in paths:
                    problems.append(f"{trigger_config.section} path: {path} is already the path of {paths[path]}")
                paths[path] = trigger_config.section
            built[trigger_config.key] = (trigger_config, trigger)
    if problems:
        raise ConfigError(problems)
    return built


def _shortest_gap(trigger: Trigger, fires: int = 48) -> float | None:
    """The shortest time between a timed trigger's next ``fires`` fire times (None: fewer than two)."""
    if not isinstance(trigger, TimedTrigger):
        return None
    times: list[float] = []
    moment: float | None = time.time()
    while moment is not None and len(times) < fires:
        moment = trigger.next_after(moment)
        if moment is not None:
            times.append(moment)
    return min((b - a for a, b in zip(times, times[1:], strict=False)), default=None)


def trigger_problems(config: CorralConfig, manager: pluggy.PluginManager, environ: Mapping[str, str]) -> list[str]:
    """What ``corral check`` reports about the triggers: each table checked by its kind's plugin."""
    try:
        build_all(config, manager, environ, lambda message: None)
    except ConfigError as exc:
        return exc.problems
    return []


class Scheduler:
    """Owns the schedules and the webhook listener; hands runs to the :class:`RunQueue`."""

    def __init__(
        self,
        runs: Runs,
        store: Store,
        writer: Writer,
        records: Records,
        pauses: Pauses,
        queue: RunQueue,
        clock: Clock,
        timeline: Timeline,
        alert: Callable[[Alert], None],
    ) -> None:
        self.runs = runs
        """The engine's operations: create, cancel, pause."""
        self.store, self.writer, self.records, self.pauses = store, writer, records, pauses
        self.alert = alert
        """Raise an alert (the alerting service's ``raise_alert``)."""
        self.queue = queue
        self.clock = clock
        self.timeline = timeline
        self.log = runs.log
        self.schedules: dict[str, Schedule] = {}
        self.webhooks: WebhookServer | None = None
        self._rebind: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self._db = store.dbs["schedules"]
        self._slowed: dict[str, dict[str, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._fresh_start: dict[str, float] = {}  # agent -> when its pause or slow-down was lifted
        pauses.listen(self._pause_changed)

    # ------------------------------------------------------------------ configuration

    async def apply(self, config: CorralConfig, built: Mapping[str, tuple[TriggerConfig, Trigger]]) -> dict[str, Any]:
        """Make ``built`` the schedule: start new triggers, stop removed ones, rebuild changed
        ones; unchanged ones keep running. Returns what changed, for the log and ``corral reload``."""
        await self.listen(config)
        db = self._db
        records = await self.writer.run(lambda txn: state.all_schedules(txn, db))
        self._slowed = await self.writer.run(
            lambda txn: {a: r for a in config.agents if (r := state.get_agent(txn, db, a)) is not None}
        )
        removed = [key for key in self.schedules if key not in built]
        changed = [key for key in self.schedules if key in built and built[key][0] != self.schedules[key].config]
        added = [key for key in built if key not in self.schedules]
        for key in removed + changed:
            await self._stop(self.schedules.pop(key))
        reading = self.clock.read()
        for key in changed + added:
            trigger_config, trigger = built[key]
            schedule = Schedule(trigger_config, trigger)
            stored = records.get(key)
            kept = stored is not None and stored.get("clock", schedule.clock) == schedule.clock
            schedule.record = stored if stored is not None and kept else self._new_record(schedule, reading)
            self.schedules[key] = schedule
            await self._start(schedule, reading)
        self.wake.set()
        return {"added": sorted(added), "removed": sorted(removed), "changed": sorted(changed)}

    def _new_record(self, schedule: Schedule, reading: Reading) -> dict[str, Any]:
        now = self._now(schedule, reading)
        return {
            "agent": schedule.config.agent,
            "kind": schedule.config.kind,
            "clock": schedule.clock,
            "created": now,
            "since": now,
            "last": None,
            "fired": 0,
            "skipped": 0,
        }

    def _now(self, schedule: Schedule, reading: Reading) -> float:
        """``reading`` on the schedule's clock."""
        return self.timeline.steady(reading) if schedule.clock == "steady" else reading.wall

    async def listen(self, config: CorralConfig, *, starting: bool = False) -> None:
        """Serve webhooks on ``[schedule] webhook_port`` (restarting on a new port).

        A port that cannot be bound on a reload is a ConfigError, and the listener already
        running stays. At start-up (``starting``) it stops nothing: every other agent still
        runs, a critical alert says the webhook triggers cannot fire, and the port is tried
        again (after 1 s, doubling up to every 30 s) until it is free; the triggers' routes
        are in place meanwhile, so they answer as soon as it binds.
        """
        port = config.schedule.webhook_port
        if port is not None and (self.webhooks is None or port != self.webhooks.requested_port):
            server = WebhookServer(port, self.log)
            try:
                await server.start()
            except OSError as exc:
                where = f"{config.path}: [schedule] webhook_port"
                problem = f"{where}: cannot listen on 127.0.0.1:{port} ({exc.strerror}); choose a free port"
                if not starting:
                    raise ConfigError([problem]) from None
                self._unbound(server, problem)
                return
            if self.webhooks is not None:
                server.routes = self.webhooks.routes
                await self.webhooks.stop()
            self.webhooks = server
        elif port is None and self.webhooks is not None:
            await self.webhooks.stop()
            self.webhooks = None

    def _unbound(self, server: WebhookServer, problem: str) -> None:
        self.webhooks = server
        self.log.error("webhook listener not started", problem=problem, retry_in=REBIND_FIRST)
        self.alert(
            Alert(
                key="webhook-listener",
                severity=Severity.CRITICAL,
                title=f"webhook listener cannot bind 127.0.0.1:{server.requested_port}: webhook triggers do not fire",
                body=f"{problem}. corral tries the port again until it is free; every other trigger runs.",
            )
        )
        self._rebind = asyncio.create_task(self._bind_later(server))

    async def _bind_later(self, server: WebhookServer) -> None:
        wait = REBIND_FIRST
        while self.webhooks is server:
            await asyncio.sleep(wait)
            wait = min(wait * 2, REBIND_MAX)
            if self.webhooks is not server:
                return  # a reload moved the listener elsewhere
            try:
                await server.start()
            except OSError:
                continue
            self.alert(
                Alert(
                    key="webhook-listener",
                    severity=Severity.INFO,
                    title=f"webhook listener started on 127.0.0.1:{server.port}",
                    resolved=True,
                )
            )
            return

    async def _start(self, schedule: Schedule, reading: Reading) -> None:
        description = schedule.trigger.describe()
        schedule.record.update(
            agent=schedule.config.agent, kind=schedule.config.kind, describe=description, clock=schedule.clock
        )
        schedule.record.setdefault("created", schedule.record.get("since"))
        if isinstance(schedule.trigger, EventTrigger):
            env = TriggerEnv(
                schedule.config.agent,
                schedule.config.key,
                partial(self.fire, schedule),
                self.webhooks,
                self.log,
            )
            try:
                await schedule.trigger.start(env)
            except Exception as exc:  # a plugin's trigger may raise anything; the others still start
                self._start_failed(schedule, f"{type(exc).__name__}: {exc}")
                return
        else:
            now = self._now(schedule, reading)
            if self._lower_bound(schedule, now) > now + RESOLUTION:  # the clock was set back while the daemon was down
                self._rewind(schedule, now)
            self._plan(schedule, self._lower_bound(schedule, now), reading)
            if schedule.record["next"] is None and schedule.record["last"] is None:
                self.log.warning(
                    "trigger will never fire: its time has passed", agent=schedule.config.agent, trigger=description
                )
        self.log.info(
            "schedule started", agent=schedule.config.agent, schedule=schedule.config.key, trigger=description
        )
        await self._save(schedule)

    def _start_failed(self, schedule: Schedule, error: str) -> None:
        config = schedule.config
        self.log.error("trigger could not start", agent=config.agent, schedule=config.key, error=error)
        self.alert(
            Alert(
                key=f"trigger-start:{config.key}",
                severity=Severity.WARNING,
                title=f"a trigger of {config.agent} could not start",
                body=f"{config.section}: {error}. It does not fire until it starts: fix it and `corral reload`.",
                agent=config.agent,
            )
        )

    async def _stop(self, schedule: Schedule) -> None:
        if isinstance(schedule.trigger, EventTrigger):
            try:
                await schedule.trigger.stop()
            except Exception as exc:  # a plugin's trigger may raise anything
                self.log.error("trigger did not stop cleanly", schedule=schedule.config.key, error=str(exc))
        self.log.info("schedule stopped", agent=schedule.config.agent, schedule=schedule.config.key)

    async def close(self) -> None:
        if self._rebind is not None:
            self._rebind.cancel()
            self._rebind = None
        for schedule in list(self.schedules.values()):
            await self._stop(schedule)
        self.schedules.clear()
        if self.webhooks is not None:
            await self.webhooks.stop()
            self.webhooks = None

    def _lower_bound(self, schedule: Schedule, now: float) -> float:
        """Fire times at or before this are handled: the last one handled, else ``since``."""
        record = schedule.record
        bound = record["last"] if record["last"] is not None else record.get("since")
        return float(bound) if bound is not None else now

    def _plan(self, schedule: Schedule, after: float, reading: Reading) -> None:
        """Plan the first fire time after ``after`` that is not already handled."""
        timed = schedule.timed
        assert timed is not None
        nominal = timed.next_after(after)
        while nominal is not None and (span := schedule.handled(nominal)) is not None:
            nominal = timed.next_after(span[1])
        schedule.record["next"] = nominal
        schedule.fire_at = schedule.due(nominal) if nominal is not None else None
        self._estimate(schedule, reading)

    def _estimate(self, schedule: Schedule, reading: Reading) -> None:
        """``due``: when the next fire comes by the wall clock, for ``corral status``."""
        due = schedule.fire_at
        if due is not None and schedule.clock == "steady":
            due = reading.wall + (due - self.timeline.steady(reading))
        schedule.record["due"] = due

    def _rewind(self, schedule: Schedule, moment: float) -> None:
        """The wall clock was set back to ``moment``: remember what was handled, and start a
        new span there, so handled fire times do not run again and the others do."""
        record = schedule.record
        last, since = record["last"], record.get("since")
        if last is not None and last > moment:
            spans = [tuple(span) for span in record.get("covered", ())]
            spans.append((since if since is not None and since < last else moment, last))
            record["covered"] = _merged(spans)[-MAX_SPANS:]
            record["last"] = None
            record["since"] = moment
        elif last is None and (since is None or since > moment):
            record["since"] = moment

    async def _save(self, schedule: Schedule) -> None:
        db, key, record = self._db, schedule.config.key, dict(schedule.record)
        await self.writer.run(lambda txn: state.put_schedule(txn, db, key, record))

    # ------------------------------------------------------------------ the clock

    async def run(self) -> None:
        """Fire timed schedules as they come due, until cancelled. The clocks are read at
        least every :data:`~corral.schedule.clock.TICK` seconds, so a step or a wake is
        noticed within about that."""
        while True:
            self.wake.clear()
            reading, jumps = self.timeline.observe()
            if jumps:
                await self.timeline.beat(reading)  # status shows the jump before what it causes
                await self._jumped(reading, [j.at for j in jumps if j.kind is JumpKind.STEP and j.jump < 0])
            for agent in await self.pauses.expire():
                self.log.info("pause ended", agent=agent)
            self.queue.pump()
            due = sorted(self._due(reading), key=lambda s: s.record["due"])
            # together, so their runs are stored in shared commits rather than one fsync each
            outcomes = await asyncio.gather(*(self._fire_due(s, reading) for s in due), return_exceptions=True)
            for schedule, outcome in zip(due, outcomes, strict=True):
                if isinstance(outcome, Exception):  # one schedule's failure must not stop the others
                    self.log.error("schedule failed to fire", schedule=schedule.config.key, error=repr(outcome))
            await self.timeline.beat(reading)
            times = [s.record["due"] for s in self.schedules.values() if s.timed and s.record.get("due") is not None]
            expiry = self.pauses.next_expiry()
            if expiry is not None:
                times.append(expiry)
            await self.clock.wait(min(times, default=reading.wall + IDLE_WAKE), self.wake)

    async def _jumped(self, reading: Reading, back_to: list[float]) -> None:
        """After a step or a wake: wall-clock schedules set back start a new span; every
        timed schedule's plan and wall-clock estimate is made again."""
        for schedule in self.schedules.values():
            if schedule.timed is None:
                continue
            if schedule.clock == "wall":
                for moment in back_to:
                    self._rewind(schedule, moment)
            now = self._now(schedule, reading)
            self._plan(schedule, self._lower_bound(schedule, now), reading)
            await self._save(schedule)

    def _due(self, reading: Reading) -> list[Schedule]:
        return [
            s
            for s in self.schedules.values()
            if s.timed is not None and s.fire_at is not None and s.fire_at <= self._now(s, reading)
        ]

    async def _fire_due(self, schedule: Schedule, reading: Reading) -> None:
        """Handle every fire time of ``schedule`` up to now: the latest on time fires, the
        missed ones go by the agent's ``missed`` policy, and the next time is planned."""
        timed = schedule.timed
        assert timed is not None
        record = schedule.record
        now = self._now(schedule, reading)
        lower = self._lower_bound(schedule, now)
        created = record.get("created")
        # a wall time before the schedule existed is owed nothing when a step jumped over it
        unowed = created if created is not None and schedule.clock == "wall" else None
        policy = self.queue.policy(schedule.config.agent)
        allowed = {"skip": 0, "once": 1, "all": policy.missed_max}[policy.missed]
        left = max(0, allowed - record.get("caught_up", 0))
        late: list[float] = []  # due within LATE: run as usual, oldest first
        missed: list[float] = []
        more = False
        handled: float | None = None
        cursor = timed.last_until(now)
        while cursor is not None and cursor > lower + RESOLUTION:
            span = schedule.handled(cursor)
            if span is not None:
                cursor = timed.last_until(span[0])
                continue
            due = schedule.due(cursor)
            if due <= now:
                handled = cursor if handled is None else handled
                if unowed is not None and cursor <= unowed + RESOLUTION and due <= self.timeline.live_from:
                    pass
                elif len(late) + len(missed) >= COUNTED:
                    more = True
                    break
                elif now - due <= LATE:
                    late.append(cursor)
                else:
                    missed.append(cursor)
            cursor = timed.last_until(cursor - 2 * RESOLUTION)
        if handled is None:  # only times whose jitter has not passed yet
            self._plan(schedule, lower, reading)
            await self._save(schedule)
            return
        self._plan(schedule, handled, reading)  # first: each fire's own commit stores the next time too
        if missed:
            await self._missed(schedule, missed, more, policy.missed, left)
        for nominal in sorted(late):
            record["caught_up"] = 0  # on time again: the next downtime may catch up again
            await self.fire(schedule, None, nominal=nominal)  # stores the record with the run or the skip
        if record["last"] is None or record["last"] < handled:
            record["last"] = handled  # only now: a crash amid catch-ups leaves the rest owed
            await self._save(schedule)

    async def _missed(self, schedule: Schedule, times: list[float], more: bool, policy: str, left: int) -> None:
        count = f"{len(times)}{' or more' if more else ''}"
        agent, record = schedule.config.agent, schedule.record
        if policy == "skip" or not left:
            why = (
                "missed = skip"
                if policy == "skip"
                else f"{record.get('caught_up', 0)} caught up since the last fire on time (missed_max)"
            )
            self.log.warning(
                "missed fire times skipped", agent=agent, schedule=schedule.config.key, count=count, reason=why
            )
            record["skipped"] = record.get("skipped", 0) + len(times)
            record["last_skip"] = {
                "at": self.clock.now(),
                "reason": f"missed while the daemon was down, the machine slept or the clock was set forward ({why})",
            }
            return
        chosen = sorted(times)[-left:]
        self.log.warning(
            "missed fire times caught up",
            agent=agent,
            schedule=schedule.config.key,
            missed=count,
            running=len(chosen),
            policy=policy,
        )
        for nominal in chosen:
            record["caught_up"] = record.get("caught_up", 0) + 1
            await self.fire(schedule, None, nominal=nominal, catch_up=True)

    def _pause_changed(self, agent: str, pause: dict[str, Any] | None) -> None:
        if pause is None:  # lifted: the runs before it no longer count as "no progress"
            self._fresh_start[agent] = time.time()
        self.queue.pump()
        self.wake.set()

    # ------------------------------------------------------------------ firing

    async def fire(
        self, schedule: Schedule, payload: Any, *, nominal: float | None = None, catch_up: bool = False
    ) -> dict[str, Any]:
        """One fire of ``schedule``: a queued run (``{"run": id}``) or a recorded skip (``{"skipped": why}``).

        Fires of one agent are decided one at a time, so two at once cannot both find it idle."""
        async with self._locks.setdefault(schedule.config.agent, asyncio.Lock()):
            return await self._fire(schedule, payload, nominal, catch_up)

    async def _fire(self, schedule: Schedule, payload: Any, nominal: float | None, catch_up: bool) -> dict[str, Any]:
        config = schedule.config
        agent = self.runs.config.agents.get(config.agent)
        when = nominal if nominal is not None else self.clock.now()
        if agent is None or not agent.enabled:
            return await self._skip(schedule, when, "the agent is disabled or no longer configured")
        pause = self.runs.paused(config.agent)
        if pause is not None:
            return await self._skip(schedule, when, f"the agent is paused: {pause['reason']}")
        slowed = self._slowed.get(config.agent)
        if slowed is not None and schedule.timed is not None:
            slowed["fires"] = slowed.get("fires", 0) + 1
            if slowed["fires"] % slowed["slowed"]:
                return await self._skip(schedule, when, f"slowed {slowed['slowed']}x: no progress")
        if not catch_up:
            refusal = await self._overlap(config.agent)
            if refusal is not None:
                return await self._skip(schedule, when, refusal)
        if payload is None:
            payload = config.input if config.has_input else agent.input
        db, key, record = self._db, config.key, schedule.record
        record["fired"] = record.get("fired", 0) + 1
        if nominal is not None:
            record["last"] = max(record["last"] or 0.0, nominal)
        saved = dict(record)
        fields: dict[str, Any] = {"schedule": key}
        if nominal is not None:
            fields["fire_time"] = nominal
        if catch_up:
            fields["missed"] = True
        run = await self.runs.create_run(
            config.agent,
            payload,
            trigger=config.kind,
            also=lambda txn, run: state.put_schedule(txn, db, key, saved),
            **fields,
        )
        self.queue.add(run)
        return {"run": run["id"]}

    async def _overlap(self, agent: str) -> str | None:
        """Apply the overlap policy to a fire of a busy agent: None lets the run be queued."""
        policy = self.queue.policy(agent)
        busy = self.queue.active(agent) >= policy.max_running or self.queue.depth(agent) > 0
        if not busy:
            return None
        if policy.overlap == "skip":
            return "the previous run is still active (overlap = skip)"
        if policy.overlap == "queue":
            if self.queue.depth(agent) >= policy.max_queued:
                return f"{policy.max_queued} runs already wait (overlap = queue, max_queued = {policy.max_queued})"
            return None
        for waiting in list(self.queue.waiting.get(agent, ())):
            self.queue.remove(waiting["id"])
            await self.runs.cancel(waiting["id"], "replaced by a newer fire (overlap = cancel)")
        running = self.queue.running_ids(agent)
        for run_id in running[: max(0, len(running) - policy.max_running + 1)]:
            await self.runs.cancel(run_id, "replaced by a newer fire (overlap = cancel)")
        return None

    async def _skip(self, schedule: Schedule, when: float, reason: str) -> dict[str, Any]:
        config = schedule.config
        self.log.info("trigger skipped", agent=config.agent, trigger=config.kind, schedule=config.key, reason=reason)
        record = schedule.record
        record["skipped"] = record.get("skipped", 0) + 1
        record["last_skip"] = {"at": when, "reason": reason}
        if schedule.timed is not None:
            record["last"] = max(record["last"] or 0.0, when)
        await self._save(schedule)
        return {"skipped": reason}

    # ------------------------------------------------------------------ no progress

    async def run_done(self, run: dict[str, Any], final: dict[str, Any] | None) -> None:
        """After a scheduled run ends: slow or pause an agent that makes no progress, and lift
        the slow-down (with an all-clear) once it does."""
        agent = self.runs.config.agents.get(run["agent"])
        if agent is None or run.get("schedule") is None or final is None:
            return
        policy = agent.schedule
        if not policy.no_progress_runs:
            return
        records = self.records
        with self.store.read() as txn:
            stuck = progress.stalled(
                records, txn, agent.name, policy.no_progress_runs, self._fresh_start.get(agent.name, 0.0)
            )
        key = f"no-progress:{agent.name}"
        if not stuck:
            if agent.name in self._slowed:
                await self._set_slowed(agent.name, None)
                self.log.info("no-progress slow-down lifted", agent=agent.name)
                self.alert(
                    Alert(
                        key=key,
                        severity=Severity.INFO,
                        title=f"{agent.name} makes progress again",
                        agent=agent.name,
                        resolved=True,
                    )
                )
            return
        if agent.name in self._slowed or self.runs.paused(agent.name) is not None:
            return
        why = (
            f"its last {policy.no_progress_runs} scheduled runs ended the same way ({final['state']}) "
            "without a tool call or state change"
        )
        if policy.no_progress_action == "pause":
            await self.runs.pause_agent(agent.name, f"no progress: {why}")
            action = "paused until `corral resume`"
        else:
            await self._set_slowed(
                agent.name, {"slowed": policy.slow_factor, "since": self.clock.now(), "reason": why, "fires": 0}
            )
            action = f"its timed triggers slowed {policy.slow_factor}x until a run makes progress"
        self.log.warning("agent makes no progress", agent=agent.name, reason=why, action=action)
        self.alert(
            Alert(
                key=key,
                severity=Severity.WARNING,
                title=f"{agent.name} makes no progress",
                body=f"{why}; {action}.",
                agent=agent.name,
            )
        )

    async def _set_slowed(self, agent: str, record: dict[str, Any] | None) -> None:
        if record is None:
            self._slowed.pop(agent, None)
            self._fresh_start[agent] = time.time()
        else:
            self._slowed[agent] = record
        db = self._db
        await self.writer.run(lambda txn: state.put_agent(txn, db, agent, record))

    async def unslow(self, agent: str) -> bool:
        """``corral resume`` also lifts a no-progress slow-down; True if there was one."""
        if agent not in self._slowed:
            return False
        await self._set_slowed(agent, None)
        return True


def _merged(spans: list[tuple[float, float]]) -> list[list[float]]:
    """Overlapping or touching spans joined, in order."""
    out: list[list[float]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1] + RESOLUTION:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out
