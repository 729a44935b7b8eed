"""CPU time and memory of a process and its descendants, from /proc (Linux)."""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (several proxy workers, for instance)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(children(current))
    return pids


def _ticks(stat_path: str) -> int:
    """utime + stime (fields 14 and 15) of a /proc stat file, in clock ticks; 0 if it is gone."""
    try:
        with open(stat_path) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``'s process tree (threads included), in seconds."""
    return sum(_ticks(f"/proc/{member}/stat") for member in tree(pid)) / CLOCK_TICKS


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pid: int) -> float:
    """Current resident memory of the process tree (VmRSS summed), in MB."""
    return sum(_status_kb(member, "VmRSS") for member in tree(pid)) / 1024


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) summed over the process tree, in MB. Summing counts pages
    that forked workers share with their parent more than once: an upper bound."""
    return sum(_status_kb(member, "VmHWM") for member in tree(pid)) / 1024


def pss_mb(pid: int) -> float:
    """Proportional resident memory of the process tree (pages shared between forked workers
    counted once in total), in MB: the honest sum for several processes."""
    total = 0
    for member in tree(pid):
        try:
            with open(f"/proc/{member}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total / 1024


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU of the main thread of each process in the tree (the proxy's event
    loop; without the span writer's threads), in seconds."""
    return sum(_ticks(f"/proc/{member}/task/{member}/stat") for member in tree(pid)) / CLOCK_TICKS
