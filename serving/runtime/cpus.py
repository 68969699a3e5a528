"""How many CPUs this process may use: the count that sizes workers, threads and twins.

`os.cpu_count()` is the host's count. In a container it is the node's, not the container's:
a pod limited to 2 CPUs on a 64-core node would start 64 workers and run out of memory. The
usable count is the process's CPU affinity, capped by the cgroup CPU quota when one is set.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@functools.cache
def available_cpus() -> int:
    return usable_count(_affinity(), CGROUP_ROOT)


def usable_count(affinity: int, cgroup_root: Path) -> int:
    quota = cgroup_quota(cgroup_root)
    return max(1, min(affinity, quota) if quota else affinity)


def cgroup_quota(root: Path) -> int | None:
    """CPUs allowed by the cgroup quota, rounded up (v2 `cpu.max`, or v1 `cpu.cfs_quota_us`
    over `cpu.cfs_period_us`); None when there is no limit or no cgroup file."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:  # "max": no limit
        return None
    return math.ceil(quota_us / period_us) if quota_us > 0 and period_us > 0 else None


def _affinity() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
