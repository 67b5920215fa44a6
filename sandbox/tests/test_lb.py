"""The load balancer's pure part: the pool after a drain/enable, the upstream lines."""

import pytest

from rollout_sandbox.lb import LbError, plan_pool, upstream_conf

HOSTS = ["camera-1", "camera-2", "camera-3"]


def test_drain_then_enable():
    drained = plan_pool(HOSTS, set(), drain=["camera-2"])
    assert drained == {"camera-2"}
    assert plan_pool(HOSTS, drained, enable=["camera-2"]) == set()


def test_unknown_host_is_refused_by_name():
    with pytest.raises(LbError, match="not a host behind the load balancer: camera-9"):
        plan_pool(HOSTS, set(), drain=["camera-9"])


def test_never_drains_the_last_serving_host():
    with pytest.raises(LbError, match="would leave no host serving"):
        plan_pool(HOSTS, {"camera-1", "camera-2"}, drain=["camera-3"])
    with pytest.raises(LbError, match="would leave no host serving"):
        plan_pool(HOSTS, set(), drain=HOSTS)


def test_upstream_marks_drained_hosts_down():
    hosts = [{"name": n, "address": f"10.0.0.{i}"} for i, n in enumerate(HOSTS, start=1)]
    text = upstream_conf(hosts, {"camera-2"})
    assert "server 10.0.0.1:8000;  # camera-1" in text
    assert "server 10.0.0.2:8000 down;  # camera-2" in text
    assert "server 10.0.0.3:8000;  # camera-3" in text
