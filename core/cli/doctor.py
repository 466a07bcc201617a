"""``corral doctor``: which protections this machine offers, and what each agent will get.

It runs the same detection and planning as the daemon (without starting any agent), so
what it prints is what a run would be refused for or recorded with. Exit 0 when every
enabled agent can start, 1 when one would be refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from corral.cli.common import EXIT_FAILED, EXIT_OK, described, load, print_json
from corral.config import CorralConfig
from corral.daemon.power import capability


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    doctor = sub.add_parser("doctor", parents=[common], help="show the protections active here and for each agent")
    described(
        doctor,
        "The protections this machine offers (sandbox backend, Landlock, namespaces, seccomp, cgroups, keyring, "
        "keep-awake, clocks) and, per agent, what it asks for and whether it will run confined, degraded or be "
        "refused; exit 1 when an agent would be refused.",
        ["corral doctor", "corral doctor --json"],
    )
    doctor.add_argument("--json", action="store_true", help="as JSON, raw values (times in epoch seconds)")
    doctor.set_defaults(func=cmd_doctor)


def _cgroups() -> dict[str, Any]:
    """Whether runs can get a cgroup v2 folder, and which limits its controllers allow."""
    if not sys.platform.startswith("linux"):
        return {"available": False, "reason": f"cgroups are a Linux feature; this machine runs {sys.platform}"}
    from corral.sandbox import linux

    root = linux.cgroup2_root()
    if root is None:
        return {"available": False, "reason": "no cgroup v2 hierarchy is mounted"}
    if not os.access(root, os.W_OK):
        return {"available": False, "reason": f"{root} is not writable by this user (no delegated cgroup)"}
    try:
        controllers = (root / "cgroup.controllers").read_text().split()
    except OSError:
        controllers = []
    limits = ["cgroup.kill"] + [f"{c}.max" for c in ("memory", "pids") if c in controllers]
    missing = [f"{c}.max" for c in ("memory", "pids") if c not in controllers]
    reason = f"{root} is writable: {', '.join(limits)}"
    if missing:
        reason += f"; {', '.join(missing)} need the controller enabled in the parent's cgroup.subtree_control"
    return {"available": True, "reason": reason, "limits": limits}


def _suggested_user(sandbox: Any) -> dict[str, str] | None:
    """The default agent account, when a root daemon could run agents as it right now."""
    from corral.sandbox.users import DEFAULT_USER

    if os.geteuid() != 0:
        return None
    found = sandbox.offered(DEFAULT_USER).get(f"user:{DEFAULT_USER}")
    if found is None or not found.available:
        return None
    return {"name": DEFAULT_USER, "reason": found.reason}


def _clocks() -> dict[str, Any]:
    """Whether a wake can be told from a clock step here (docs/scheduling.md)."""
    from corral.schedule.clock import Clock

    clock = Clock()
    found, boot = clock.sources, clock.read().boot
    if not found.sleep_visible:
        reason = f"no clock here counts sleep apart from {found.awake}: a wake is reported as a clock step forward"
    else:
        reason = f"{found.awake} stops in sleep, {found.elapsed} does not: steps and wakes are told apart"
    if not boot:
        reason += "; the boot is not identified, so steady time and max_resume_age use the wall clock across restarts"
    return {"available": found.sleep_visible, "reason": reason, "awake": found.awake, "elapsed": found.elapsed}


def report(config: CorralConfig) -> dict[str, Any]:
    """The doctor's findings as plain data (what ``--json`` prints)."""
    from corral.pluginmanager import register_plugins
    from corral.sandbox.backend import demanded
    from corral.sandbox.manager import Sandbox
    from corral.secrets import SecretsError, detect_keyring

    plugins = register_plugins(config.plugins, config.home / "plugins")
    sandbox = Sandbox(config, plugins.manager, os.environ)
    offered = sandbox.offered()
    keyring = detect_keyring()
    awake, why = capability()
    machine = {
        "suggested_user": _suggested_user(sandbox),
        "backend": sandbox.backend.name,
        "uid": os.geteuid(),
        "protections": {name: vars(p) for name, p in offered.items()},
        "cgroups": _cgroups(),
        "keyring": {"available": keyring.available, "reason": keyring.reason},
        "keep_awake": {"available": awake, "reason": why, "enabled": config.keep_awake},
        "clocks": _clocks(),
    }
    agents = {}
    for agent in config.agents.values():
        plan = sandbox.plan(agent)
        request = sandbox.request(agent)
        try:
            stored = set(sandbox.secrets.list())
            missing_secrets = [name for name in agent.secrets if name not in stored]
        except SecretsError as exc:
            missing_secrets = [f"{name} ({exc})" for name in agent.secrets]
        if (plan.missing and not agent.sandbox.degraded_ok) or missing_secrets:
            verdict = "refused"
        elif plan.missing:
            verdict = "degraded"
        else:
            verdict = "confined"
        agents[agent.name] = {
            "verdict": verdict,
            "asks_for": demanded(request),
            "network": agent.sandbox.network_text(),
            "user": agent.sandbox.user,
            "degraded_ok": agent.sandbox.degraded_ok,
            "missing": plan.missing,
            "notes": plan.notes,
            "secrets": list(agent.secrets),
            "missing_secrets": missing_secrets,
            "read_write": list(request.read_write),
            "read_only_extra": [str(p) for p in agent.sandbox.read_only],
        }
    return {"machine": machine, "agents": agents}


def _runs_as(machine: dict[str, Any]) -> str:
    """Who an agent without ``user`` runs as; a suggestion only where following it would work."""
    if machine["uid"] != 0:
        return "you"
    privileges = machine["protections"].get("privileges", {})
    who = "root without capabilities in its own user namespace" if privileges.get("available") else "root"
    suggestion = machine.get("suggested_user")
    if suggestion:
        return f"{who}; user = {suggestion['name']!r} would give it a uid of its own"
    return who


def cmd_doctor(args: argparse.Namespace) -> int:
    config = load(args)
    found = report(config)
    refused = [name for name, agent in found["agents"].items() if agent["verdict"] == "refused"]
    if args.json:
        print_json(found)
        return EXIT_FAILED if refused else EXIT_OK
    machine = found["machine"]
    print(f"sandbox backend: {machine['backend']} (daemon uid {machine['uid']})")
    for name, p in machine["protections"].items():
        mark = "yes" if p["available"] else "NO "
        print(f"  {mark} {name:<16} {p['reason']}")
        if p.get("checked"):
            print(f"      {'':<16} checked: {p['checked']}")
    for name in ("cgroups", "keyring", "keep_awake", "clocks"):
        mark = "yes" if machine[name]["available"] else "NO "
        print(f"  {mark} {name:<16} {machine[name]['reason']}")
        if name == "keep_awake":
            print(f"      {'':<16} config: [corral] keep_awake = {str(machine[name]['enabled']).lower()}")
    for name, agent in found["agents"].items():
        runs_as = agent["user"] or _runs_as(machine)
        print(f"agent {name}: {agent['verdict']} (network {agent['network']}; runs as {runs_as})")
        for line in agent["missing"]:
            print(f"  missing {line}")
        for line in agent["notes"]:
            print(f"  note    {line}")
        for secret in agent["missing_secrets"]:
            print(f"  missing secret {secret}: store it with `corral secrets set {secret.split()[0]}`")
        if agent["verdict"] == "refused" and agent["missing"]:
            print(f"  to run it anyway with less, set degraded_ok = true in [agents.{name}.sandbox]")
    return EXIT_FAILED if refused else EXIT_OK
