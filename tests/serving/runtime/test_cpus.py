"""Usable CPUs (serving/runtime/cpus.py): a container sizes itself by its CPU limit, not the host."""


def test_usable_cpus_follow_a_container_cpu_limit(tmp_path):
    """A 2-CPU container on a 64-core node must size itself for 2, not 64."""
    from serving.runtime.cpus import cgroup_quota, usable_count

    (tmp_path / "cpu.max").write_text("200000 100000\n")  # cgroup v2: 2 CPUs
    assert usable_count(64, tmp_path) == 2
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: rounded up
    assert usable_count(64, tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")  # no limit: the affinity
    assert usable_count(6, tmp_path) == 6
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(v1) == 4 and usable_count(3, v1) == 3  # the affinity can be the smaller
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # cgroup v1: no limit
    assert cgroup_quota(v1) is None and cgroup_quota(tmp_path / "missing") is None
