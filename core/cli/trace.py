"""What ``corral trace RUN`` prints: the run, then its steps as a table, one row each, or
one step whole (``--step N``); ``--tree`` is :mod:`corral.cli.tree`.

A model step reads as what a person wants of it: the model, the last message it was sent,
what it answered (in short) and the tools it asked for, its tokens and cost; a tool step
as its arguments and result. Shown whole, a model step is its full prompt and response,
a tool step its arguments and result, each value as indented JSON. Text the agent or the
model chose is escaped (:func:`corral.observe.logview.printable`), and the journal is
shown as stored: corral wrote it through the redactor (docs/secrets.md); the caller
redacts again with the secrets it knows.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from corral.cli.views import failure_lines, money, short, table, took, when
from corral.observe.failures import unsuccessful
from corral.observe.logview import printable
from corral.store import conversations

if TYPE_CHECKING:
    from corral.cli.common import Exit
    from corral.config import CorralConfig
    from corral.secrets import Redactor

HEADERS = ["SEQ", "KIND", "NAME", "ARGS", "RESULT", "TOKENS", "COST", "TOOK", "ATT", "NOTE"]
"""The columns of ``corral trace``'s step table."""


def trace_text(run: dict[str, Any], steps: list[dict[str, Any]]) -> str:
    """The run, its steps as a table, and how it ended."""
    lines = [
        f"run {run['id']}  agent {run['agent']}  state {run['state']}  trace {run.get('trace_id', '-')}",
        f"  trigger {run.get('trigger', '-')}  attempts {run.get('attempt', 0)}  created {when(run.get('created'))}"
        f"  took {took(run.get('started'), run.get('ended'))}",
    ]
    if run.get("parent"):
        lines.append(f"  forked from run {run['parent']} at step {run.get('forked_at', '?')}")
    if run.get("applied"):
        lines.append(f"  protections {', '.join(run['applied'])}")
    if run.get("code_changed"):
        lines.append(f"  resumed under changed code {run['code_changed']}")
    lines += [f"  {line}" for line in by_hand(run)]
    lines = [printable(line) for line in lines]
    if run.get("input") is not None:
        lines.append(f"  input  {short(run['input'], 100)}")
    lines.append("")
    lines.append(table([row(step, run) for step in steps], HEADERS) if steps else "no steps")
    lines.append("")
    if run["state"] == "succeeded":
        lines.append(f"result {short(run.get('result'), 200)}")
    elif run.get("error"):
        lines += [printable(line) for line in failure_lines(run["error"])]
    return "\n".join(lines)


def by_hand(run: dict[str, Any]) -> list[str]:
    """Who started the run and who changed it by hand, and what they did, oldest first:
    ``approved approval 7fk2q9 by approval link 2026-12-06 07:02:11``."""
    lines = [f"started by {run['by']}"] if run.get("by") else []
    for change in run.get("changes") or []:
        if change.get("by"):
            lines.append(f"{change.get('did') or change['state']} by {change['by']} {when(change.get('at'))}")
    return lines


def row(step: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """One step as a row under :data:`HEADERS`."""
    model = step.get("kind") == "model"
    return [
        str(step["seq"]),
        printable(str(step.get("kind", "?"))),
        printable(model_name(step) if model else str(step.get("name", ""))),
        asked(step, 40) if model else short(step.get("args"), 40),
        result(step),
        tokens(step) if model else "",
        cost(step) if model else "",
        took(step.get("started"), step.get("ended")),
        str(step.get("attempt", "")),
        ", ".join(notes(step, run)),
    ]


def model_name(step: dict[str, Any]) -> str:
    """The configured model that answered a model step (``default`` when the agent named none),
    with the models it failed over from: ``local (after fake)``."""
    name = str(step.get("model") or step.get("name") or "default")
    tried = [t["model"] for t in step.get("failed_over") or ()]
    return f"{name} (after {', '.join(tried)})" if tried else name


def asked(step: dict[str, Any], width: int) -> str:
    """A model step's ARGS cell: its last message; a step stored as continuing an earlier
    one that added none (the same messages again) says whose they are."""
    continued = conversations.continues(step)
    if continued is not None and not (step.get("args") or {}).get("messages"):
        return short(f"the {continued[1]} messages of step {continued[0]}", width)
    return last_message(step.get("args"), width)


def last_message(request: Any, width: int) -> str:
    """The last message of a model request, in short, with its role: what the model was answering."""
    messages = request.get("messages") if isinstance(request, dict) else None
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return short(request, width)
    last = messages[-1]
    text = last.get("text")
    if not text and last.get("tool_calls"):
        text = calls(last["tool_calls"])
    return short(f"{last.get('role', '?')}: {text if isinstance(text, str) else json.dumps(text, default=str)}", width)


def calls(tool_calls: Any) -> str:
    """The tool calls a model asked for, as ``name({"arg": ...})``, comma-separated."""
    if not isinstance(tool_calls, list):
        return ""
    shown = []
    for call in tool_calls:
        if isinstance(call, dict):
            arguments = call.get("arguments")
            shown.append(f"{call.get('name', '?')}({json.dumps(arguments, default=str, ensure_ascii=False)})")
    return ", ".join(shown)


def result(step: dict[str, Any]) -> str:
    """The RESULT cell: a model's answer in short (its text, the tools it asked for), a
    tool's or state step's value, or the error; with its approval or guardrail."""
    model = step.get("kind") == "model"
    if step.get("status") != "done":
        outcome = str(step.get("status", "?")).upper()
    elif not step.get("ok"):
        outcome = f"{unsuccessful(step).upper()} " + short((step.get("error") or {}).get("message", ""), 44)
    elif model and isinstance(step.get("value"), dict):
        answer = step["value"]
        text, asked = str(answer.get("text") or ""), calls(answer.get("tool_calls"))
        said = json.dumps(text, ensure_ascii=False) if text else ""
        # the tools asked for first: a long text must not hide them
        outcome = short(f"→ {asked}" + (f" {said}" if said else "") if asked else said or '""', 50)
    else:
        outcome = short(step.get("value"), 50)
    if step.get("approval"):
        outcome += printable(f" [approval {step['approval']} {step.get('approval_state', 'pending')}]")
    elif step.get("guardrail"):
        outcome = printable(f"[{step['guardrail']['guardrail']}: {step['guardrail']['verdict']}] ") + outcome
    return outcome


def tokens(step: dict[str, Any]) -> str:
    """``input+output`` tokens of a model step (``-`` when it has no usage: it failed)."""
    usage = step.get("usage")
    if not isinstance(usage, dict):
        return "-"
    return f"{int(usage.get('input_tokens', 0))}+{int(usage.get('output_tokens', 0))}"


def cost(step: dict[str, Any]) -> str:
    """A model step's cost as a person reads it: ``$0.04``, ``< $0.01``, ``unpriced``."""
    if not isinstance(step.get("usage"), dict):
        return "-"
    raw = step.get("cost_usd")
    if raw is None:
        return "unpriced"
    try:
        return money(Decimal(str(raw)))
    except InvalidOperation:
        return printable(str(raw))


def notes(step: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """What else the row should say: copied from a forked run, answered from the journal, run more
    than once, called live after the request left the journal (``on_divergence = "live"``)."""
    found = []
    if step.get("forked_from"):
        found.append("from the fork's parent")
    elif step.get("attempt", 0) < run.get("attempt", 0) and step.get("status") == "done":
        found.append("replayed")
    if int(step.get("executions", 1) or 0) > 1:
        found.append(f"ran {step['executions']}×")
    if step.get("diverged"):
        found.append(f"live: differs from the journal ({printable(str(step['diverged']))})")
    elif step.get("live"):
        found.append("live (after a divergence)")
    if step.get("tries"):
        found.append(f"{len(step['tries'])} failed {'try' if len(step['tries']) == 1 else 'tries'} retried")
    return found


def tries(step: dict[str, Any]) -> list[str]:
    """A retried tool step's failed tries, one line each: how it failed and the wait after it."""
    shown = []
    for failed in step.get("tries") or ():
        error = failed.get("error") or {}
        asked = f" (Retry-After {failed['retry_after']:g} s)" if failed.get("retry_after") is not None else ""
        shown.append(
            f"  try {failed.get('number', '?')}: failed after {took(failed.get('started'), failed.get('ended'))}:"
            f" {short(error.get('message', ''), 100)}; waited {failed.get('wait') or 0:.2f} s{asked}"
        )
    return shown


def whole(step: dict[str, Any], run: dict[str, Any]) -> str:
    """A step as ``corral trace RUN --step N`` prints it: every field a person needs, and for a
    model step the full prompt and response, for any other its arguments and result whole."""
    model = step.get("kind") == "model"
    head = [
        f"step {step['seq']} of run {run['id']} ({run['agent']}): {step.get('kind', '?')} "
        f"{model_name(step) if model else step.get('name', '')}",
        f"  status {step.get('status', '?')}"
        + ("" if step.get("status") != "done" else (" ok" if step.get("ok") else f" {unsuccessful(step)}"))
        + f"  attempt {step.get('attempt', '-')}  executions {step.get('executions', '-')}",
        f"  started {when(step.get('started'))}  ended {when(step.get('ended'))}"
        f"  took {took(step.get('started'), step.get('ended'))}",
    ]
    if model:
        value = step.get("value")
        answer: dict[str, Any] = value if isinstance(value, dict) else {}
        head.append(
            f"  tokens {tokens(step)}  cost {cost(step)}  provider {answer.get('provider', '-')}"
            f"  model id {answer.get('model', '-')}  finish {answer.get('finish_reason', '-')}"
        )
    if extra := notes(step, run):
        head.append(f"  {', '.join(extra)}")
    head += tries(step)
    if step.get("approval"):
        head.append(f"  approval {step['approval']} {step.get('approval_state', 'pending')}")
    if step.get("guardrail"):
        head.append(f"  guardrail {_json(step['guardrail'])}")
    lines = [printable(line) for line in head]
    if model:
        lines += _prompt(step.get("args")) + _response(step)
    else:
        lines += ["", "arguments:", *_block(step.get("args"))]
        if step.get("status") == "done":
            lines += ["", "result:" if step.get("ok") else f"{unsuccessful(step)}:"]
            lines += _block(step.get("value") if step.get("ok") else step.get("error"))
    return "\n".join(lines)


def _prompt(request: Any) -> list[str]:
    if not isinstance(request, dict):
        return ["", "request:", *_block(request)]
    lines = ["", f"prompt ({len(request.get('messages') or [])} messages):"]
    for message in request.get("messages") or []:
        if not isinstance(message, dict):
            lines += _block(message)
            continue
        role = str(message.get("role", "?"))
        if message.get("tool_call_id"):
            role += f" (answer to {message['tool_call_id']}{', an error' if message.get('is_error') else ''})"
        lines.append(printable(f"--- {role}"))
        if message.get("text"):
            lines += _text(str(message["text"]))
        for call in message.get("tool_calls") or []:
            lines += _call(call)
    tools = [t if isinstance(t, str) else (t or {}).get("name", "?") for t in request.get("tools") or []]
    if tools:
        lines.append(printable(f"tools offered: {', '.join(map(str, tools))}"))
    options = {k: v for k, v in (request.get("options") or {}).items() if v not in (None, [], ())}
    if options:
        lines.append(printable(f"options: {_json(options, indent=None)}"))
    return lines


def _response(step: dict[str, Any]) -> list[str]:
    if step.get("status") != "done":
        return ["", f"response: none ({printable(str(step.get('status', '?')))})"]
    if not step.get("ok"):
        return ["", "error:", *_block(step.get("error"))]
    answer = step.get("value")
    if not isinstance(answer, dict):
        return ["", "response:", *_block(answer)]
    lines = ["", "response:"]
    if answer.get("text"):
        lines += _text(str(answer["text"]))
    for call in answer.get("tool_calls") or []:
        lines += _call(call)
    if not answer.get("text") and not answer.get("tool_calls"):
        lines.append("    (empty)")
    return lines


def _call(call: Any) -> list[str]:
    if not isinstance(call, dict):
        return _block(call)
    lines = [printable(f"    asks for tool {call.get('name', '?')} (call {call.get('id', '?')}):")]
    lines += ["    " + line for line in _block(call.get("arguments"))]
    if call.get("arguments_error"):
        lines.append(printable(f"      (its arguments are not valid JSON: {call['arguments_error']})"))
    return lines


def _text(text: str) -> list[str]:
    return ["    " + printable(line) for line in text.splitlines() or [""]]


def _block(value: Any) -> list[str]:
    return ["    " + line for line in _json(value).splitlines()]


def _json(value: Any, indent: int | None = 2) -> str:
    from corral.observe.logview import printable_json

    return printable_json(json.dumps(value, indent=indent, default=str, ensure_ascii=False))


def no_step(run: dict[str, Any], steps: list[dict[str, Any]], seq: int) -> Exit:
    """The error for a step ``seq`` the run does not have, naming the steps it has."""
    from corral.cli.common import EXIT_NOT_FOUND, Exit

    has = f"steps 1 to {max(s['seq'] for s in steps)}" if steps else "no steps"
    return Exit(EXIT_NOT_FOUND, f"corral: run {run['id']} has no step {seq}; it has {has} (`corral trace {run['id']}`)")


def redactor(config: CorralConfig, agent: str) -> Redactor:
    """A redactor of the secrets this command can know: the config's own (model keys, alert
    sink credentials) and those the agent is granted, from the secrets store. The journal
    was written redacted; this keeps out a value that reached it before it was a secret."""
    from corral.secrets import Redactor, Secret, SecretsError, SecretsStore, secrets_in

    found = secrets_in(config)
    granted = config.agents[agent].secrets if agent in config.agents else ()
    if granted:
        store = SecretsStore.default(config.home, os.environ)
        for name in granted:
            try:
                found.append(Secret(store.get(name), name))
            except SecretsError:  # not stored (any more): nothing of it to find
                continue
    return Redactor(found)
