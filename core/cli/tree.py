"""``corral trace RUN --tree``: a run's whole timeline as a tree a person can read on a terminal.

Trigger, then each attempt with the steps it ran (a later attempt replays the
earlier ones from the journal), how it ended and what started the next one (a resume
after an interruption, an approval decided, a release or a retry by hand, and how long
that took), the alerts raised about the run with what became of them, and the hold or
end. What ended and started each attempt is read from the run's recorded state changes
(``changes``); a run stored before they were recorded shows its attempts without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from corral.cli.alerts import outcome
from corral.cli.trace import cost, model_name, notes, tokens
from corral.cli.trace import result as answer
from corral.cli.views import short, took, when
from corral.observe.failures import headline, unsuccessful
from corral.observe.logview import printable


def _branch(lines: list[str], items: list[tuple[str, list[str]]], indent: str = "") -> None:
    """Each label and child is escaped here (:func:`printable`): agents choose much of the text."""
    for i, (label, children) in enumerate(items):
        last = i == len(items) - 1
        lines.append(f"{indent}{'└─ ' if last else '├─ '}{printable(label)}")
        child_indent = indent + ("   " if last else "│  ")
        for j, child in enumerate(children):
            lines.append(f"{child_indent}{'└─ ' if j == len(children) - 1 else '├─ '}{printable(child)}")


def _step(step: dict[str, Any], run: dict[str, Any]) -> str:
    model = step.get("kind") == "model"
    name = f"#{step['seq']} {step['kind']} {model_name(step) if model else step['name']}"
    args = short(step.get("args"), 40) if not model else ""
    if step.get("status") != "done":
        result = step.get("status", "?").upper()
    elif not step.get("ok"):
        result = f"{unsuccessful(step).upper()} " + short((step.get("error") or {}).get("message", ""), 50)
    elif model:
        result = answer(step)
    else:
        result = "→ " + short(step.get("value"), 40)
    extra = [f"{tokens(step)} tok, {cost(step)}"] if model and step.get("usage") else []
    extra += notes(step, run)
    suffix = f"  [{', '.join(extra)}]" if extra else ""
    return (
        " ".join(part for part in (name, args, result) if part)
        + f"  {took(step.get('started'), step.get('ended'))}{suffix}"
    )


def _alert(record: dict[str, Any]) -> str:
    alert = record["alert"]
    kind = "resolved" if alert.get("resolved") else alert.get("severity", "?")
    return f"alert {kind}: {short(alert.get('title', ''), 70)}  → {outcome(record)}  {when(alert.get('created'))}"


@dataclass
class _Attempt:
    """One attempt as the run's state changes tell it."""

    started: float
    ended: float | None = None
    end_state: str | None = None
    before: list[dict[str, Any]] = field(default_factory=list)
    """The changes between the previous attempt's end and this one's start."""


def _attempts(run: dict[str, Any]) -> list[_Attempt] | None:
    """The run's attempts from its recorded state changes; None when they do not account
    for every attempt (a run stored before they were recorded, or with more than are kept)."""
    attempts: list[_Attempt] = []
    between: list[dict[str, Any]] = []
    for change in run.get("changes") or []:
        if change.get("state") == "running":
            attempts.append(_Attempt(float(change["at"]), before=between))
            between = []
        elif attempts and attempts[-1].end_state is None:
            attempts[-1].ended, attempts[-1].end_state = float(change["at"]), str(change["state"])
        else:
            between.append(change)
    return attempts if len(attempts) == int(run.get("attempt", 0)) else None


def _why_next(previous: _Attempt, now: _Attempt, held: dict[str, Any] | None, run: dict[str, Any]) -> str:
    """What started attempt ``now`` after ``previous`` ended, and how long after."""
    after = took(previous.ended, now.started)
    states = [change.get("state") for change in now.before]
    if previous.end_state == "interrupted":
        return f"interrupted; resumed {after} later"
    if previous.end_state == "on_hold" and held is not None and held.get("approval"):
        decided = held.get("approval_state", "decided")
        return f"waited for approval {held['approval']}, {decided}; resumed {after} after the hold"
    if previous.end_state == "on_hold" and run.get("released"):
        return f"released by hand ({run['released']}); resumed {after} after the hold"
    if previous.end_state == "failed" and "queued" in states:
        return f"failed; retried by hand (`corral retry`) {after} later"
    return f"{previous.end_state or 'ended'}; attempt again {after} later"


def trace_tree(run: dict[str, Any], steps: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> str:
    """The tree for ``corral trace RUN --tree``."""
    lines = [
        printable(f"run {run['id']}  {run['agent']}  {run['state']}  took {took(run.get('started'), run.get('ended'))}")
    ]
    items: list[tuple[str, list[str]]] = [
        (f"trigger {run.get('trigger', '-')} at {when(run.get('created'))}", [f"input {short(run.get('input'), 80)}"])
    ]
    forked = [_step(step, run) for step in steps if step.get("attempt") == 0]
    if run.get("parent"):
        items.append((f"forked from run {run['parent']} at step {run.get('forked_at', '?')}", forked))
    attempts = max(int(run.get("attempt", 0)), 1)
    told = _attempts(run)
    for n in range(1, attempts + 1):
        shown = [_step(step, run) for step in steps if step.get("attempt", 1) == n]
        label = f"attempt {n}"
        if told is not None and n <= len(told):
            label += f" at {when(told[n - 1].started)}"
            if n > 1:
                # the step held for approval is journaled again by the attempt its decision started
                held = next((s for s in steps if s.get("approval") and s.get("attempt", 1) in (n - 1, n)), None)
                label += f" ({_why_next(told[n - 2], told[n - 1], held, run)})"
        earlier = sum(1 for step in steps if 0 < step.get("attempt", 1) < n and step.get("status") == "done")
        if n > 1 and earlier:
            label += f"; replayed {earlier} finished steps from the journal"
        items.append((label, shown or ["no new steps"]))
    if run.get("code_changed"):
        items.append((f"resumed under changed code {run['code_changed']}", []))
    items += [(_alert(record), []) for record in alerts]
    if run["state"] == "succeeded":
        end = f"succeeded → {short(run.get('result'), 80)}"
    elif run["state"] == "on_hold":
        end = f"on hold: {short(run.get('hold_reason'), 100)}"
    elif run.get("error"):
        end = f"{run['state']} ({run['error'].get('kind', '?')}): {short(headline(run['error']), 100)}"
    else:
        end = run["state"]
    items.append((f"{end}  {when(run.get('ended'))}".rstrip(" -"), []))
    _branch(lines, items)
    return "\n".join(lines)
