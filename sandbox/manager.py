"""The daemon's side of confinement: pick the backend, detect once, plan each attempt.

:class:`Sandbox` turns an agent's :class:`~corral.sandbox.spec.SandboxPolicy` into a
:class:`~corral.sandbox.backend.Confinement` (adding what every agent needs to read: the
Python installation, corral, its code and plugins), asks the backend for a plan, fetches
the secrets the agent is granted, and says why an agent must not start when its policy
asks for a protection this machine lacks.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from corral.sandbox import users
from corral.sandbox.backend import Confinement, NoBackend, Plan, Protection, SandboxBackend
from corral.secrets import SecretsError, SecretsStore

if TYPE_CHECKING:
    from corral.config import AgentConfig, CorralConfig


@dataclass
class Prepared:
    """One attempt's confinement: the plan, the secret variables, and a refusal when it must not start."""

    plan: Plan
    env: dict[str, str] = field(default_factory=dict)
    refusal: dict[str, str] | None = None

    def labels(self) -> list[str]:
        """What the daemon records about the plan in the run's ``applied`` list."""
        labels = [f"sandbox:{self.plan.backend}", *self.plan.applied]
        labels += [f"missing:{text.split(':', 1)[0]}" for text in self.plan.missing]
        if self.env:
            labels.append(f"secrets:{len(self.env)}")
        return labels


def _contains(folder: Path, inner: Path) -> bool:
    return folder == inner or folder in inner.parents


class Sandbox:
    """Confinement for every agent of one config; detection runs once, on first use."""

    def __init__(
        self,
        config: CorralConfig,
        manager: pluggy.PluginManager,
        environ: Mapping[str, str],
        secrets: SecretsStore | None = None,
    ) -> None:
        self.config = config
        self._manager = manager
        self._backend: SandboxBackend | None = None
        self._offered: dict[str, Protection] | None = None
        self._environ = environ
        self._secrets = secrets

    @property
    def secrets(self) -> SecretsStore:
        """The secrets store, opened on first use (finding the OS keyring takes a moment)."""
        if self._secrets is None:
            self._secrets = SecretsStore.default(self.config.home, self._environ)
        return self._secrets

    @property
    def backend(self) -> SandboxBackend:
        """The first registered backend that fits this platform (:class:`NoBackend` if none)."""
        if self._backend is None:
            from corral.pluginmanager import call_impl, ordered

            found: list[Any] = []
            for impl in ordered(self._manager.hook.corral_register_sandbox_backends):
                try:
                    call_impl(impl, register=found.append)
                except Exception:  # noqa: BLE001 - a broken plugin offers no backend; the next one may
                    continue
            self._backend = next((b for b in found if b.usable()), NoBackend())
        return self._backend

    def offered(self, user: str | None = None) -> dict[str, Protection]:
        """What this machine offers (slow the first time: it may start a probe process).

        Detected again only when ``user`` is one not seen before (a reloaded config).
        """
        if self._offered is None or (user and f"user:{user}" not in self._offered):
            wanted = {a.sandbox.user for a in self.config.agents.values() if a.sandbox.user}
            self._offered = self.backend.detect(sorted(wanted | ({user} if user else set())))
        return self._offered

    def request(self, agent: AgentConfig, workdir: Path | None = None) -> Confinement:
        """The agent's policy plus what every agent needs to read; nothing that holds the home.
        ``workdir`` replaces the agent's own (a replay runs in a fresh one)."""
        home = self.config.home
        readable = [*users.python_paths(), str(agent.code), str(home / "plugins")]
        readable += [p for p in self.config.plugins if p.endswith(".py")]
        readable += [p for p in sys.path if p and os.path.isdir(p) and self._harmless(Path(p).resolve())]
        readable += [str(p) for p in agent.sandbox.read_only]
        workdir = workdir or self.config.workdir(agent.name)
        policy = agent.sandbox
        return Confinement(
            agent=agent.name,
            workdir=workdir,
            read_write=tuple(dict.fromkeys([str(workdir), *map(str, policy.read_write)])),
            read_only=tuple(dict.fromkeys(readable)),
            network=policy.network,
            endpoints=policy.endpoints,
            user=policy.user,
            degraded_ok=policy.degraded_ok,
            python=sys.executable,
            home=str(home),
            programs=(str(agent.code), *map(str, policy.read_only)) if agent.command is not None else (),
        )

    def _harmless(self, folder: Path) -> bool:
        """Whether a ``sys.path`` folder can be readable to agents: not one holding the corral
        home or the daemon user's home, nor one inside the corral home (``python -m`` puts the
        working folder on ``sys.path``: supervisord's, in the documented layout)."""
        home = self.config.home
        return not any(_contains(folder, inner) for inner in (home, Path.home().resolve())) and not _contains(
            home, folder
        )

    def plan(self, agent: AgentConfig, workdir: Path | None = None) -> Plan:
        request = self.request(agent, workdir)
        plan = self.backend.plan(request, self.offered(agent.sandbox.user))
        home = self.config.home
        if _contains(agent.code, home) or _contains(home, agent.code):
            where = "contains" if _contains(agent.code, home) else "is inside"
            plan.missing.append(
                f"filesystem: the agent's code folder {agent.code} {where} the corral home; reading it would "
                "expose the store, the secrets and other agents' workdirs. Move the code out of the home"
            )
        return plan

    def prepare(self, agent: AgentConfig, workdir: Path | None = None) -> Prepared:
        """Plan one attempt (in ``workdir``, by default the agent's own) and fetch its
        secrets; blocking (call it off the event loop)."""
        prepared = Prepared(self.plan(agent, workdir))
        policy = agent.sandbox
        if prepared.plan.missing and not policy.degraded_ok:
            prepared.refusal = {
                "kind": "sandbox",
                "message": (
                    f"agent {agent.name!r} was not started: its sandbox policy asks for protections this machine "
                    f"lacks: {'; '.join(prepared.plan.missing)}. Run `corral doctor` for details; fix them, or set "
                    f"degraded_ok = true in [agents.{agent.name}.sandbox] to run it with less"
                ),
            }
            return prepared
        account = prepared.plan.account
        if account is not None:  # the agent's own user must still write its workdir (mode 0700)
            workdir = workdir or self.config.workdir(agent.name)
            for folder in (workdir, workdir / ".tmp"):
                os.chown(folder, account.uid, account.gid, follow_symlinks=False)  # never where a link leads
        try:
            prepared.env = self.secrets.grant(agent.secrets)
        except SecretsError as exc:
            prepared.refusal = {"kind": "secrets", "message": f"agent {agent.name!r} was not started: {exc}"}
        return prepared
