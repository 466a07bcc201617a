"""``corral trace RUN --tree``: a run's whole timeline as a tree a person can read on a terminal.

Trigger, then each attempt with the steps it ran (a later attempt replays the
earlier ones from the journal), how it ended and how long the next one waited, the
alerts raised about the run with what became of them, and the hold or end.
"""

from __future__ import annotations

from typing import Any

from corral.cli.alerts import outcome
from corral.cli.views import short, took, when
from corral.observe.logview import printable

MAX_BACKOFF = 60.0  # the engine's: attempt n+1 starts 2**(n-1) s (at most this) after attempt n ends


def _branch(lines: list[str], items: list[tuple[str, list[str]]], indent: str = "") -> None:
    """Each label and child is escaped here (:func:`printable`): agents choose much of the text."""
    for i, (label, children) in enumerate(items):
        last = i == len(items) - 1
        lines.append(f"{indent}{'└─ ' if last else '├─ '}{printable(label)}")
        child_indent = indent + ("   " if last else "│  ")
        for j, child in enumerate(children):
            lines.append(f"{child_indent}{'└─ ' if j == len(children) - 1 else '├─ '}{printable(child)}")


def _step(step: dict[str, Any]) -> str:
    name = f"#{step['seq']} {step['kind']} {step['name']}"
    args = short(step.get("args"), 40)
    if step.get("status") != "done":
        result = step.get("status", "?").upper()
    elif step.get("refused"):
        result = "REFUSED " + short((step.get("error") or {}).get("message", ""), 50)
    elif step.get("ok"):
        result = "→ " + short(step.get("value"), 40)
    else:
        result = "ERROR " + short((step.get("error") or {}).get("message", ""), 50)
    extra = []
    if step.get("usage"):
        usage = step["usage"]
        extra.append(f"{usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)} tok")
    if step.get("executions", 1) > 1:
        extra.append(f"ran {step['executions']}×")
    suffix = f"  [{', '.join(extra)}]" if extra else ""
    return f"{name} {args} {result}  {took(step.get('started'), step.get('ended'))}{suffix}"


def _alert(record: dict[str, Any]) -> str:
    alert = record["alert"]
    kind = "resolved" if alert.get("resolved") else alert.get("severity", "?")
    return f"alert {kind}: {short(alert.get('title', ''), 70)}  → {outcome(record)}  {when(alert.get('created'))}"


def trace_tree(run: dict[str, Any], steps: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> str:
    """The tree for ``corral trace RUN --tree``."""
    lines = [
        printable(f"run {run['id']}  {run['agent']}  {run['state']}  took {took(run.get('started'), run.get('ended'))}")
    ]
    items: list[tuple[str, list[str]]] = [
        (f"trigger {run.get('trigger', '-')} at {when(run.get('created'))}", [f"input {short(run.get('input'), 80)}"])
    ]
    attempts = max(int(run.get("attempt", 0)), 1)
    for n in range(1, attempts + 1):
        shown = [_step(step) for step in steps if step.get("attempt", 1) == n]
        label = f"attempt {n}"
        earlier = sum(1 for step in steps if step.get("attempt", 1) < n and step.get("status") == "done")
        if n > 1 and earlier:
            label += f" (replayed {earlier} finished steps from the journal)"
        if n < attempts:
            label += f"; interrupted, attempt {n + 1} after ~{min(MAX_BACKOFF, 2.0 ** (n - 1)):g}s backoff"
        items.append((label, shown or ["no new steps"]))
    if run.get("code_changed"):
        items.append((f"resumed under changed code {run['code_changed']}", []))
    items += [(_alert(record), []) for record in alerts]
    if run["state"] == "succeeded":
        end = f"succeeded → {short(run.get('result'), 80)}"
    elif run["state"] == "on_hold":
        end = f"on hold: {short(run.get('hold_reason'), 100)}"
    elif run.get("error"):
        end = f"{run['state']} ({run['error'].get('kind', '?')}): {short(run['error'].get('message'), 100)}"
    else:
        end = run["state"]
    items.append((f"{end}  {when(run.get('ended'))}".rstrip(" -"), []))
    _branch(lines, items)
    return "\n".join(lines)
