"""The daemon's side of agent processes: spawn under a policy, watch, kill the tree.

Every OS and psutil call the daemon makes about agent processes goes through
``ProcessControl``, so tests can hand the daemon a subclass that fails on purpose.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from corral.run.childwire import ChildWire
from corral.sandbox.policy import Policy, launcher_argv
from corral.wire import DEFAULT_MAX_FRAME


@dataclass
class Child:
    """One spawned agent process and its pipes."""

    process: asyncio.subprocess.Process
    wire: ChildWire
    cgroup: Path | None = None
    known: set[psutil.Process] = field(default_factory=set)
    wrapped: bool = False
    """Started under a wrapper that relays the launcher's exit as ``128 + signal`` (bubblewrap)."""
    _launcher: psutil.Process | None = None

    @property
    def pid(self) -> int:
        """The process the daemon started: the launcher, or the wrapper it runs under."""
        return self.process.pid

    async def wait(self) -> int:
        """The launcher's exit status, negative for a signal, however it was wrapped."""
        code = await self.process.wait()
        if self.wrapped and code > 128:
            return -(code - 128)
        return code

    def launcher(self) -> psutil.Process | None:
        """The launcher itself: the started process, or under a wrapper its first descendant
        running Python (bubblewrap's own processes come before it); found once, then kept."""
        if self._launcher is not None:
            return self._launcher
        try:
            proc = psutil.Process(self.pid)
            if not self.wrapped:
                self._launcher = proc
            else:
                for descendant in proc.children(recursive=True):
                    command = descendant.cmdline()  # bubblewrap's own carry the launcher's argv too
                    if command and command[0] == sys.executable and "corral.sandbox.launcher" in command:
                        self._launcher = descendant
                        break
        except psutil.Error:
            return None
        return self._launcher


JOIN_THEN_EXEC = 'printf "%s\\n" $$ > "$1" || exit 71; shift; exec "$@"'
"""A wrapped launcher cannot join its cgroup itself (the cgroup tree is not mounted in its
sandbox): a shell writes its own pid to ``cgroup.procs``, then becomes the wrapper, so
every process of the run starts inside the cgroup."""


def _filter_fd(account_memory: bool) -> int:
    """A pipe's read end holding the compiled seccomp filter, for bubblewrap to read once."""
    from corral.sandbox import seccomp

    program = seccomp.program(account_memory)
    read, write = os.pipe()
    try:
        os.write(write, program)  # a few KiB: well under a pipe's buffer
    finally:
        os.close(write)
    return read


def join_cgroup_first(cgroup: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` started by a shell that first moves itself into ``cgroup`` (exit 71 if it cannot)."""
    return ["/bin/sh", "-c", JOIN_THEN_EXEC, "corral-join", str(cgroup / "cgroup.procs"), *argv]


def _children_of(pids: list[int]) -> set[int]:
    """The children (zombies included) of ``pids``, from each thread's ``/proc`` children list."""
    children: set[int] = set()
    for pid in pids:
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in threads:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as listed:
                    children.update(int(found) for found in listed.read().split())
            except (OSError, ValueError):
                continue
    return children


def _home_under(proc: psutil.Process, prefix: str) -> bool:
    """Whether ``proc``'s HOME is under ``prefix`` (``<home>/agents/``): corral sets an agent's
    HOME to its workdir, so a process carrying it came from a run."""
    try:
        home = proc.environ().get("HOME", "")
    except psutil.Error:
        return False
    return (home + os.sep).startswith(prefix)


def kill_strays(agents_root: Path) -> list[int]:
    """SIGKILL every process whose HOME is under ``agents_root`` (see :meth:`ProcessControl.prepare`)."""
    prefix = str(agents_root) + os.sep
    killed = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid() or not _home_under(proc, prefix):
            continue
        try:
            proc.kill()
            killed.append(proc.pid)
        except psutil.Error:
            continue
    return killed


class ProcessControl:
    """Spawning and killing, with the platform's best tools for a whole process tree."""

    def __init__(self) -> None:
        self.is_linux = sys.platform.startswith("linux")
        self._cgroup_parent: Path | None = None
        self._reaping = False
        self._spawning = 0
        self._emptying: list[Path] = []
        self._scan: tuple[float, dict[int, list[int]]] | None = None
        self._agents_root: str | None = None
        self._seen: set[psutil.Process] = set()  # every process seen in a finished run's tree
        self._doomed: set[int] = set()  # killed by the sweep, to be reaped by it
        self.live: dict[str, Child] = {}  # run id -> its agent process, from spawn to forget

    def prepare(self, agents_root: Path | None = None) -> list[str]:
        """Once per daemon: become a subreaper and find a writable cgroup; say what applied.

        ``agents_root`` (``<home>/agents``) lets the orphan sweep recognise an escaped
        agent process by its HOME, which corral set to the agent's workdir. Called with the
        home locked, so no run of this home is live: any process still carrying such a HOME
        escaped an earlier daemon or foreground run (a platform or a degraded sandbox that
        could not kill it with its run) and is killed now.
        """
        self._agents_root = str(agents_root) + os.sep if agents_root is not None else None
        applied: list[str] = []
        if agents_root is not None and kill_strays(agents_root):
            applied.append("strays-killed")
        if not self.is_linux:
            return applied
        from corral.sandbox import linux

        if linux.become_subreaper():
            self._reaping = True
            applied.append("subreaper")
        root = linux.cgroup2_root()
        if root is not None:
            linux.remove_stale_cgroups(root)
            parent = root / f"corral-{os.getpid()}"
            try:
                parent.mkdir(exist_ok=True)
                self._cgroup_parent = parent
                applied.append("cgroup2")
                applied += [f"cgroup2:{name}" for name in linux.enable_controllers(parent)]
            except OSError:
                pass
        return applied

    def run_cgroup(self, run_id: str, memory_bytes: int | None, max_pids: int | None) -> tuple[Path | None, list[str]]:
        if self._cgroup_parent is None:
            return None, []
        from corral.sandbox import linux

        return linux.create_run_cgroup(self._cgroup_parent, f"{run_id}-{os.urandom(2).hex()}", memory_bytes, max_pids)

    async def spawn(
        self,
        policy_args: dict[str, Any],
        workdir: Path,
        env: dict[str, str],
        cgroup: Path | None,
        wrap: Sequence[str] = (),
        namespaced: bool = False,
        seccomp: bool = False,
    ) -> Child:
        """Start the launcher (under ``wrap``: ``bwrap`` or ``sandbox-exec``) with two fresh wire
        pipes and nothing else inherited. ``namespaced``: ``wrap`` puts it in a PID namespace;
        ``seccomp``: ``wrap`` is bubblewrap, given the agent's filter as ``--seccomp FD``."""
        self._spawning += 1  # until the child is in `live`, an orphan sweep must not run
        try:
            child = await self._spawn(policy_args, workdir, env, cgroup, wrap, namespaced, seccomp)
            self.live[str(policy_args["run_id"])] = child
            return child
        finally:
            self._spawning -= 1

    async def _spawn(
        self,
        policy_args: dict[str, Any],
        workdir: Path,
        env: dict[str, str],
        cgroup: Path | None,
        wrap: Sequence[str],
        namespaced: bool,
        seccomp: bool,
    ) -> Child:
        child_read, daemon_write = os.pipe()
        daemon_read, child_write = os.pipe()
        passed = [child_read, child_write]
        if seccomp:
            passed.append(_filter_fd(bool(policy_args.get("memory_accounted"))))
            wrap = [*wrap[:-1], "--seccomp", str(passed[-1]), wrap[-1]]  # before bwrap's closing "--"
        policy = Policy(
            wire_in=child_read,
            wire_out=child_write,
            parent_pid=1 if namespaced else os.getpid(),
            cgroup=str(cgroup) if cgroup and not wrap else None,
            **policy_args,
        )
        argv = launcher_argv(policy, wrap)
        if cgroup is not None and wrap:
            argv = join_cgroup_first(cgroup, argv)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=workdir,
                env=env,
                start_new_session=True,
                close_fds=True,
                pass_fds=passed,
            )
        except BaseException:
            os.close(daemon_read)
            os.close(daemon_write)
            raise
        finally:
            for fd in passed:
                os.close(fd)
        max_frame = policy_args.get("max_frame", DEFAULT_MAX_FRAME)
        assert isinstance(max_frame, int)
        return Child(process, ChildWire(daemon_read, daemon_write, max_bytes=max_frame), cgroup, wrapped=namespaced)

    def run_processes(self, child: Child, *, max_age: float = 0.0) -> list[psutil.Process]:
        """Every process of the run: its cgroup's members where it has one (escaped
        double-forks included, no scan of the process table) and their unreaped children
        (a zombie leaves ``cgroup.procs`` but still holds a pid), else :meth:`tree`."""
        if child.cgroup is not None:
            try:
                pids = [int(line) for line in (child.cgroup / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                pids = []
            if pids:
                found = []
                for pid in {*pids, *_children_of(pids)}:
                    try:
                        found.append(psutil.Process(pid))
                    except psutil.Error:
                        continue
                return found
        return self.tree(child.pid, max_age=max_age)

    def tree(self, pid: int, *, max_age: float = 0.0) -> list[psutil.Process]:
        """``pid`` and its descendants. ``max_age`` lets watchdogs share one scan of the
        process table (reading every process's parent is the costly part) for that long."""
        now = time.monotonic()
        if self._scan is None or now - self._scan[0] > max_age:
            parents: dict[int, list[int]] = {}
            for proc in psutil.process_iter(["ppid"]):
                parents.setdefault(proc.info["ppid"], []).append(proc.pid)
            self._scan = (now, parents)
        parents = self._scan[1]
        found, stack = [], [pid]
        while stack:
            current = stack.pop()
            try:
                found.append(psutil.Process(current))
            except psutil.Error:
                continue
            stack.extend(parents.get(current, ()))
        return found

    def cpu_seconds(self, child: Child) -> float:
        """CPU time (user + system) the run's launcher has used so far (as ``RLIMIT_CPU`` counts it)."""
        launcher = child.launcher()
        if launcher is None:
            return 0.0
        try:
            times = launcher.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    def cgroup_oom_killed(self, child: Child) -> bool:
        """Whether the kernel's cgroup memory limit killed something in this run."""
        if child.cgroup is None:
            return False
        try:
            events = (child.cgroup / "memory.events").read_text()
        except OSError:
            return False
        counts = dict(line.split() for line in events.splitlines() if line.count(" ") == 1)
        return int(counts.get("oom_kill", "0")) > 0

    def tree_rss(self, tree: list[psutil.Process]) -> int:
        """Resident memory of the processes of ``tree`` (as :meth:`tree` returned it)."""
        total = 0
        for proc in tree:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def kill_tree(self, child: Child) -> None:
        """SIGKILL the run's every process: cgroup, process group, and each descendant."""
        victims = self.tree(child.pid)
        child.known.update(victims)  # what reparents to the daemon (bubblewrap's init) is reaped by the sweep
        if child.cgroup is not None:
            from corral.sandbox import linux

            linux.kill_cgroup(child.cgroup)
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for proc in victims:
            try:
                proc.kill()
            except psutil.Error:
                continue
        for proc in list(child.known):
            try:
                proc.kill()  # psutil refuses if the pid now belongs to another process
            except psutil.Error:
                continue

    def kill_all(self) -> None:
        """Kill every live agent process tree now (shutdown past its grace)."""
        for child in list(self.live.values()):
            self.kill_tree(child)

    def close(self) -> None:
        """Remove this daemon's cgroup folders once no run is left in them."""
        self._remove_emptied_cgroups()
        if self._cgroup_parent is not None:
            from corral.sandbox import linux

            linux.remove_cgroup(self._cgroup_parent)

    def forget(self, child: Child) -> None:
        """The run is over and its main process reaped; its cgroup goes once empty."""
        self.live = {run_id: live for run_id, live in self.live.items() if live is not child}
        self._seen.update(child.known)
        if child.cgroup is not None:
            self._emptying.append(child.cgroup)
            self._remove_emptied_cgroups()

    def _remove_emptied_cgroups(self) -> None:
        from corral.sandbox import linux

        self._emptying = [path for path in self._emptying if not linux.remove_cgroup(path)]

    def reap_orphans(self) -> list[int]:
        """Kill agent processes that escaped a finished run and reparented to us; reap them.

        Only processes known to come from a run are touched: seen in a run's tree, or
        with a HOME under ``<home>/agents``. Anything else under the daemon (a plugin's
        own subprocess) is left alone, exit status included. Called every second, so it
        never blocks: a process killed now is reaped on a later call.
        """
        self._remove_emptied_cgroups()
        killed: list[int] = []
        if not self._reaping or self._spawning:
            return killed
        self._seen = {proc for proc in self._seen if proc.is_running()}
        try:
            children = psutil.Process().children()
        except psutil.Error:
            return killed
        live_pids = {child.pid for child in self.live.values()}
        for proc in children:
            if proc.pid in live_pids:
                continue
            try:
                if proc.pid in self._doomed:
                    if proc.status() == psutil.STATUS_ZOMBIE and os.waitpid(proc.pid, os.WNOHANG)[0]:
                        self._doomed.discard(proc.pid)
                    continue
                if not self._from_a_run(proc):
                    continue
                if proc.status() == psutil.STATUS_ZOMBIE:  # already dead (bubblewrap's init, killed with its
                    os.waitpid(proc.pid, os.WNOHANG)  # run, reparents here): reap it, nothing outlived its run
                    continue
                proc.kill()
                self._doomed.add(proc.pid)
                killed.append(proc.pid)
            except (psutil.Error, ChildProcessError):
                self._doomed.discard(proc.pid)
                continue
        return killed

    def _from_a_run(self, proc: psutil.Process) -> bool:
        if proc in self._seen:
            return True
        return self._agents_root is not None and _home_under(proc, self._agents_root)
