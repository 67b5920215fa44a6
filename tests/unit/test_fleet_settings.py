"""Fleet.setting: one value for the whole inventory, the default when unset."""

from pathlib import Path

import pytest

from rollout.fleet import Fleet
from rollout.inputs import InputError


def fleet(**per_host) -> Fleet:
    return Fleet(Path("inventories/x.py"), list(per_host), dict(per_host))


def test_a_setting_every_host_shares():
    hosts = fleet(a={"rollback_batches": "50%"}, b={"rollback_batches": "50%"})
    assert hosts.setting("rollback_batches", "100%") == "50%"


def test_unset_or_none_gives_the_default():
    assert fleet(a={}, b={}).setting("rollback_batches", "100%") == "100%"
    assert fleet(a={"canary": None}).setting("canary", "camera-1") == "camera-1"


def test_hosts_that_disagree_are_refused():
    with pytest.raises(InputError, match="hosts disagree on rollback_batches"):
        fleet(a={"rollback_batches": "50%"}, b={"rollback_batches": "100%"}).setting("rollback_batches")
