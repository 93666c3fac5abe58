"""Which limit binds a phase of the intake benchmark, from the CPU each process used.

Over a measured window a process's utilisation is its CPU seconds per wall second
(1.0 = one core; its child processes included); for each thread the scheduler also
counts the time it was runnable but waited for a core; the machine's utilisation is
the share of all its cores busy (anyone's processes). The rule, in order:
  a thread running >= 90% of the time: that thread (a score or echo process runs
      its handlers on one Python thread, Redis its commands on one);
  a thread running or waiting for a core >= 90% of the time: the machine (it would
      have run, had a core been free);
  the machine's cores >= 90% busy: the machine;
  an open loop that kept up with its rate (97%): the offered rate;
  a closed loop with nothing saturated: the callers' round trips;
  an open loop behind its rate with nothing at 90% (a short window, a queue still
      growing): "~" the nearest of the two above.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SATURATED = 0.9


@dataclass(frozen=True)
class CpuSample:
    """CPU counters at one moment, by role (server, client, redis, ...)."""

    at: float
    machine: float  # busy CPU seconds of all cores
    processes: dict[str, float]
    # (pid, thread id) -> seconds running and seconds runnable but waiting for a core
    threads: dict[str, dict[tuple[int, int], tuple[float, float]]]


def sample(probes: Mapping[str, Sequence[psutil.Process]]) -> CpuSample:
    processes: dict[str, float] = {}
    threads: dict[str, dict[tuple[int, int], tuple[float, float]]] = {}
    for role, roots in probes.items():
        total = 0.0
        mine: dict[tuple[int, int], tuple[float, float]] = {}
        for root in roots:
            with contextlib.suppress(psutil.Error):
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        t = p.cpu_times()
                        total += t.user + t.system
                        for thread in p.threads():
                            mine[p.pid, thread.id] = _schedstat(p.pid, thread.id)
        processes[role] = total
        threads[role] = mine
    m = psutil.cpu_times()
    busy = m.user + m.nice + m.system + sum(getattr(m, k, 0.0) for k in ("irq", "softirq", "steal"))
    return CpuSample(time.perf_counter(), busy, processes, threads)


@dataclass
class Usage:
    """Utilisation over one window (1.0 = one core, except `machine`: all cores)."""

    seconds: float
    cores: int
    machine: float
    processes: dict[str, float] = field(default_factory=dict)
    # The busiest thread of each role's processes: which one, its share running,
    # and its share runnable but waiting for a core (the machine's other load).
    thread_names: dict[str, str] = field(default_factory=dict)
    threads: dict[str, float] = field(default_factory=dict)
    waits: dict[str, float] = field(default_factory=dict)

    @property
    def other(self) -> float:
        """Busy cores outside the measured processes (the harness, other users)."""
        return max(0.0, self.machine * self.cores - sum(self.processes.values()))


def usage(before: CpuSample, after: CpuSample) -> Usage:
    wall = max(after.at - before.at, 1e-9)
    cores = psutil.cpu_count() or 1
    result = Usage(round(wall, 2), cores, (after.machine - before.machine) / wall / cores)
    for role, cpu in after.processes.items():
        result.processes[role] = (cpu - before.processes.get(role, cpu)) / wall
        old = before.threads.get(role, {})
        deltas = {
            k: (run - old[k][0], wait - old[k][1])
            for k, (run, wait) in after.threads[role].items()
            if k in old
        }
        if deltas:
            (pid, tid), (run, wait) = max(deltas.items(), key=lambda kv: kv[1][0])
            result.threads[role] = run / wall
            result.waits[role] = wait / wall
            result.thread_names[role] = "main" if pid == tid else _thread_name(pid, tid)
    return result


def binding(u: Usage, names: Mapping[str, str], kept_up: bool | None) -> tuple[str, str]:
    """What limits the phase by the rule above, in a word for the table and in full;
    `names` says what each role is (server -> "score"), `kept_up` is None for a
    closed loop."""
    machine = f"machine ({u.cores} cores {u.machine:.0%} busy)"
    # The thread that ran most, and the one that wanted to run most.
    hot = max(u.threads, key=lambda r: u.threads[r], default="")
    ready = max(u.threads, key=lambda r: u.threads[r] + u.waits[r], default="")
    if hot and u.threads[hot] >= SATURATED:
        also = f"; the {machine} too" if u.machine >= SATURATED else ""
        what = f"{names.get(hot, hot)} {u.thread_names[hot]} thread"
        return f"{names.get(hot, hot)} thread", f"{what} ({u.threads[hot]:.0%} of a core){also}"
    wanted = u.threads[ready] + u.waits[ready] if ready else 0.0
    what = f"{names.get(ready, ready)} {u.thread_names[ready]} thread" if ready else "no thread"
    if wanted >= SATURATED:
        return "machine", (
            f"machine: the {what} was ready to run {wanted:.0%} of the time, "
            f"ran {u.threads[ready]:.0%} ({u.cores} cores {u.machine:.0%} busy)"
        )
    if u.machine >= SATURATED:
        return "machine", machine
    nearest = f"nearest: the {what} ready {wanted:.0%}, the machine {u.machine:.0%} busy"
    if kept_up:
        return "offered", f"offered rate (nothing saturated; {nearest})"
    if kept_up is None:
        return "callers", f"callers' round trips (nothing saturated; {nearest})"
    guess = "machine" if u.machine >= wanted else f"{names.get(ready, ready)} thread"
    return f"~{guess}", f"behind its rate with nothing at {SATURATED:.0%}; {nearest}"


def describe(u: Usage, names: Mapping[str, str]) -> str:
    """`score 97% (main 74%+20%), ...; machine 96% of 2 cores`: each role's CPU and
    its busiest thread's share running + waiting for a core."""
    parts = []
    for role, share in u.processes.items():
        thread = u.threads.get(role)
        hot = ""
        if thread is not None:
            hot = f" ({u.thread_names[role]} {thread:.0%}+{u.waits[role]:.0%})"
        parts.append(f"{names.get(role, role)} {share:.0%}{hot}")
    parts.append(f"other {u.other:.0%}")
    return ", ".join(parts) + f"; machine {u.machine:.0%} of {u.cores} cores"


def _schedstat(pid: int, tid: int) -> tuple[float, float]:
    """Seconds a thread ran on a core and waited runnable for one (the scheduler's
    own counts; a thread's CPU time alone cannot tell idle from starved)."""
    with contextlib.suppress(OSError, ValueError):
        run, wait, _ = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
        return int(run) / 1e9, int(wait) / 1e9
    return 0.0, 0.0


def _thread_name(pid: int, tid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
    return str(tid)
