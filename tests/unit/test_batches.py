"""Host batches and durations."""

import pytest

from rollout.batches import BatchError, fill, hook_commands, parse_batches, parse_duration, plan_batches

HOSTS = ["web-3", "web-1", "web-4", "web-2"]


def test_default_plan_on_four_hosts_canary_quarter_rest():
    assert plan_batches(HOSTS, "1,25%,100%") == [["web-1"], ["web-2"], ["web-3", "web-4"]]


def test_canary_is_chosen_explicitly():
    assert plan_batches(HOSTS, "1,25%,100%", canary="web-4") == [["web-4"], ["web-1"], ["web-2", "web-3"]]


def test_last_size_repeats_and_percent_rounds_up():
    hosts = [f"h{i:02d}" for i in range(10)]
    assert [len(b) for b in plan_batches(hosts, "1,25%")] == [1, 3, 3, 3]
    assert [len(b) for b in plan_batches(hosts, "2")] == [2, 2, 2, 2, 2]
    assert [len(b) for b in plan_batches(hosts, "100%")] == [10]


def test_every_host_exactly_once():
    hosts = [f"h{i}" for i in range(7)]
    batches = plan_batches(hosts, "1,30%,50%")
    assert sorted(h for b in batches for h in b) == sorted(hosts)


@pytest.mark.parametrize("spec", ["", "0", "x", "1,0%", "101%", "1,-2", "25 %%"])
def test_bad_batch_plans_are_refused(spec):
    with pytest.raises(BatchError):
        plan_batches(HOSTS, spec)


def test_unknown_canary_is_refused():
    with pytest.raises(BatchError, match="not a host"):
        plan_batches(HOSTS, "1", canary="web-9")


def test_parse_batches():
    assert parse_batches(" 1, 25% ,100%") == ["1", "25%", "100%"]


@pytest.mark.parametrize("text, seconds", [("90", 90), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), (0, 0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "-3", "m"])
def test_parse_duration_refuses(text):
    with pytest.raises(BatchError):
        parse_duration(text)


def test_hook_commands_fill_placeholders():
    hooks = {"before": ["drain {hosts}", "echo stage {stage} batch {batch}"], "after": ["enable {hosts}"]}
    assert hook_commands(hooks, "before", ["a", "b"], 25, 2) == ["drain a b", "echo stage 25 batch 2"]
    assert hook_commands(hooks, "after", ["a"], 25, 2) == ["enable a"]
    assert hook_commands({}, "before", ["a"], 25, 1) == []


@pytest.mark.parametrize("hooks", [{"during": []}, {"before": "drain"}, {"before": ["x {host}"]}])
def test_bad_hooks_are_refused(hooks):
    with pytest.raises(BatchError):
        hook_commands(hooks, "before", ["a"], 10, 1)


def test_hook_placeholders_are_filled_shell_quoted():
    """A value never becomes shell: each host name is one quoted word."""
    hooks = {"before": ["drain {hosts}"]}
    assert hook_commands(hooks, "before", ["a-1", "b;touch /tmp/x"], 10, 1) == ["drain a-1 'b;touch /tmp/x'"]
    assert fill("tickets --env {env} --to {next_stage}", env="prod $(id)", next_stage=25) == \
        "tickets --env 'prod $(id)' --to 25"
