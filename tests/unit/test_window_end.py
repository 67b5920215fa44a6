"""A passing gate keeps its window's end (the next check's start) only when every
host its run reached passed: hosts judged together move on together."""

from __future__ import annotations

import pytest

from rollout import checks

END = ({"at": 1.0, "stage": 100, "counters": {}}, [])


class Host:
    def __init__(self, name: str):
        self.name = name


class State:
    def __init__(self, hosts):
        self.activated_hosts = set(hosts)


@pytest.mark.parametrize("ends,reached,kept", [
    ({"a": END, "b": END, "c": END}, "abc", ["a", "b", "c"]),
    ({"a": END, "b": None, "c": END}, "abc", []),  # b inconclusive: a and c keep their windows open
    ({"a": END, "b": END}, "abc", []),  # c reached but its gate never judged (an earlier check failed)
    ({"a": END, "b": END}, "ab", ["a", "b"]),  # a batch: only its hosts were reached
    ({"a": None, "b": None}, "ab", []),
])
def test_a_window_end_is_kept_only_when_every_host_of_the_run_passed(monkeypatch, ends, reached, kept):
    written, said = [], []
    monkeypatch.setattr(checks, "keep_cursor", lambda host, end: written.append((host.name, end)))
    monkeypatch.setattr(checks, "say", lambda host, message, **_: said.append(host.name))
    hosts = {name: Host(name) for name in reached}
    state = State(hosts.values())
    checks._window_ends[id(state)] = ends
    try:
        for name in sorted(hosts):
            assert checks.keep_window_end(state, hosts[name]) is True
    finally:
        del checks._window_ends[id(state)]
    assert written == [(name, END) for name in kept]
    # a host that passed but keeps its window open says so
    assert said == ([] if kept else sorted(n for n, e in ends.items() if e is not None))
