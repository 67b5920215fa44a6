"""Paired answers compared (rollout/responses.py), judged (the gate's row
"responses differ") and planned (rollout/paired.py); and the probe's paired
stream run here against a small service whose domain answers wrong data."""

import http.server
import json
import math
import subprocess
import threading
from urllib.parse import parse_qs, urlsplit

import pytest

from rollout.catalog import CatalogError, load_catalog
from rollout.gate import ABORT, INCONCLUSIVE, PASS, Thresholds, responses_row
from rollout.paired import pair_plan, pairs_per_s
from rollout.pool import pooled_rows
from rollout.probe import probe_argv
from rollout.responses import (
    PairTally,
    ResponsePathError,
    add_tallies,
    answers_differ,
    differences,
    format_path,
    normalise,
    parse_path,
)
from rollout.window import Counters, Side


def answer(document, status=200):
    return {"status": status, "body": json.dumps(document)}


# --- paths, normalisation, differences -------------------------------------------------------------


@pytest.mark.parametrize("pattern, tokens", [
    ("$", ()), ("$.rules", ("rules",)), ("$.rules[*].updated_at", ("rules", "*", "updated_at")),
    ("$[2].x", (2, "x")), ("$.a.b[0][*]", ("a", "b", 0, "*")),
])
def test_a_path_pattern_reads_and_prints_back(pattern, tokens):
    assert parse_path(pattern) == tokens
    assert format_path(tokens) == pattern


@pytest.mark.parametrize("pattern", ["rules", "$..x", "$.a[", "$.a[x]", "$[-1]", "$x", None])
def test_a_bad_path_pattern_is_refused(pattern):
    with pytest.raises(ResponsePathError):
        parse_path(pattern)


def test_normalise_blanks_ignored_values_and_sorts_unordered_arrays():
    document = {"rules": [{"id": 2, "at": "t2"}, {"id": 1, "at": "t1"}], "total": 2}
    normal = normalise(document, [parse_path("$.rules[*].at")], [parse_path("$.rules")])
    assert normal == {"rules": [{"at": "<ignored>", "id": 1}, {"at": "<ignored>", "id": 2}], "total": 2}
    assert normalise(document) == document


def test_differences_name_every_kind_of_difference_by_its_path():
    legacy = {"state": {"running": True, "auto_start": False}, "logs": [1, 2], "n": 1, "flag": True}
    assert differences(legacy, json.loads(json.dumps(legacy))) == []
    assert differences(legacy, {**legacy, "n": 1.0}) == []  # the same JSON number
    assert differences(legacy, {**legacy, "flag": 1}) == [("flag",)]  # a bool is not a number
    assert differences(legacy, {**legacy, "state": {"running": False, "auto_start": False}}) == [("state", "running")]
    assert differences(legacy, {**legacy, "logs": [1, 2, 3]}) == [("logs", 2)]
    assert differences(legacy, {k: v for k, v in legacy.items() if k != "n"}) == [("n",)]
    many = differences({"a": list(range(100))}, {"a": list(range(1, 101))})
    assert len(many) == 20  # bounded


def test_answers_differ_by_status_first_then_by_body_and_text_bodies_compare_as_text():
    assert answers_differ(answer({}, 404), answer({})) == [("<status>",)]
    assert answers_differ({"status": 200, "body": "ok"}, {"status": 200, "body": "ok"}) == []
    assert answers_differ({"status": 200, "body": "ok"}, {"status": 200, "body": "OK"}) == [("<text>",)]


# --- a stream's tally: Diffy's noise learned from legacy against itself ---------------------------


ENDPOINTS = [{"name": "camera status"}, {"name": "camera logs", "ignore": ["$.logs[*].id"]}]


def never():
    raise AssertionError("legacy asked again although the answers agree")


def test_the_same_answers_count_as_a_pair_and_ask_nothing_more():
    tally = PairTally(ENDPOINTS)
    assert tally.compare("camera status", answer({"a": 1}), answer({"a": 1}), never) == "same"
    assert tally.as_json()["camera status"] == {"pairs": 1, "differ": 0, "skipped": 0, "first": None, "noise": []}


def test_a_difference_legacy_does_not_show_against_itself_counts_with_its_path():
    tally = PairTally(ENDPOINTS)
    legacy = answer({"state": {"running": True}})
    assert tally.compare("camera status", legacy, answer({"state": {"running": False}}), lambda: legacy) == "differ"
    assert tally.as_json()["camera status"]["differ"] == 1
    assert tally.as_json()["camera status"]["first"] == "$.state.running"


def test_data_changed_between_the_calls_is_not_the_domains_difference():
    """Legacy, the domain, legacy again: a clock that ticked or a user's write
    between the calls shows as legacy against itself: the pair is not judged
    (once), and the path becomes noise only when it moves in a second pair."""
    tally = PairTally(ENDPOINTS)
    assert tally.compare("camera status", answer({"at": "12:00:00", "n": 1}), answer({"at": "12:00:01", "n": 1}),
                         lambda: answer({"at": "12:00:01", "n": 1})) == "same"  # the domain agrees with legacy after
    assert tally.as_json()["camera status"]["noise"] == []  # legacy moved at $.at: once
    assert tally.compare("camera status", answer({"at": "t1", "n": 1}), answer({"at": "t2", "n": 1}),
                         lambda: answer({"at": "t3", "n": 1})) == "same"
    assert tally.as_json()["camera status"]["noise"] == ["$.at"]  # twice: noise
    # Learned: a pair differing only there asks legacy nothing more ...
    assert tally.compare("camera status", answer({"at": "x", "n": 1}), answer({"at": "y", "n": 1}), never) == "same"
    # ... and a real difference beside the noise still counts.
    assert tally.compare("camera status", answer({"at": "a", "n": 1}), answer({"at": "b", "n": 2}),
                         lambda: answer({"at": "c", "n": 1})) == "differ"
    assert tally.as_json()["camera status"]["first"] == "$.n"


def test_noise_is_never_the_whole_answer_a_length_or_a_status():
    tally = PairTally(ENDPOINTS)
    for _ in range(3):  # legacy's list grows between the calls: its length never becomes noise
        tally.compare("camera status", answer({"rules": [1]}), answer({"rules": [2]}),
                      lambda: answer({"rules": [1, 3]}))
        tally.compare("camera status", answer([1]), answer({"a": 1}), lambda: answer("text"))
    assert tally.as_json()["camera status"]["noise"] == []
    # Legacy answering two statuses: nothing to judge the domain by.
    assert tally.compare("camera status", answer({}, 404), answer({}), lambda: answer({})) == "skipped"
    # Legacy steady at 404 and the domain at 200: that is the domain's.
    assert tally.compare("camera status", answer({}, 404), answer({}), lambda: answer({}, 404)) == "differ"


def test_a_key_that_may_be_data_is_not_shown():
    tally = PairTally(ENDPOINTS)
    legacy = answer({"sessions": {"tok-SECRET-abc": 1}})
    tally.compare("camera status", legacy, answer({"sessions": {"tok-SECRET-abc": 2}}), lambda: legacy)
    assert tally.as_json()["camera status"]["first"] == "$.sessions.<key>"


def test_declared_paths_are_ignored_and_errors_and_cut_bodies_are_not_compared():
    tally = PairTally(ENDPOINTS)
    assert tally.compare("camera logs", answer({"logs": [{"id": 1}]}), answer({"logs": [{"id": 2}]}), never) == "same"
    assert tally.compare("camera logs", answer({}), answer({}, 500), never) == "skipped"
    assert tally.compare("camera logs", answer({}), {"status": None, "error": "timeout"}, never) == "skipped"
    assert tally.compare("camera logs", answer({}), {**answer({}), "truncated": True}, never) == "skipped"
    assert tally.compare("camera logs", answer({}), answer({}, 404), lambda: answer({})) == "differ"
    counts = tally.as_json()["camera logs"]
    assert (counts["pairs"], counts["differ"], counts["skipped"], counts["first"]) == (2, 1, 3, "HTTP 404 against 200")


def test_tallies_add_per_endpoint_and_junk_is_left_out():
    one = {"a": {"pairs": 3, "differ": 1, "skipped": 0, "first": "$.x", "noise": ["$.t"]}}
    two = {"a": {"pairs": 2, "differ": 0, "skipped": 1, "first": None, "noise": ["$.t", "$.u"]},
           "b": {"pairs": 4, "differ": 0, "skipped": 0, "first": None, "noise": []}, "c": "junk"}
    total = add_tallies([one, two, None, {"a": {"pairs": -5, "differ": True}}])
    assert total["a"] == {"pairs": 5, "differ": 1, "skipped": 1, "first": "$.x", "noise": ["$.t", "$.u"]}
    assert total["b"]["pairs"] == 4 and "c" not in total


# --- the gate's row -------------------------------------------------------------------------------


def thresholds(**overrides):
    return Thresholds.from_data(overrides)


def tally(pairs, differ, name="camera status", first="$.state.running"):
    return {name: {"pairs": pairs, "differ": differ, "skipped": 0, "first": first if differ else None, "noise": []}}


def test_without_paired_traffic_the_row_holds_nothing():
    row = responses_row(None, thresholds())
    assert (row.outcome, row.statistic) == (PASS, "n/a: no paired traffic")


def test_at_zero_tolerated_one_difference_aborts_and_names_the_endpoint_and_path():
    row = responses_row(tally(40, 1), thresholds())
    assert row.outcome == ABORT
    assert row.statistic == "camera status: $.state.running" and row.domain == "1/40"


def test_a_pass_needs_the_minimum_of_pairs():
    assert responses_row(tally(99, 0), thresholds()).outcome == INCONCLUSIVE
    assert responses_row(tally(99, 0), thresholds()).statistic == "needs 1 more pairs"
    assert responses_row(tally(100, 0), thresholds()).outcome == PASS


def test_a_tolerated_rate_is_tested_sequentially():
    t = thresholds(responses_differ_tolerated=0.01, alpha=0.001)
    assert responses_row(tally(1000, 10), t).outcome == PASS  # at the tolerated rate
    assert responses_row(tally(1000, 15), t).outcome == INCONCLUSIVE  # above it, not yet shown
    assert responses_row(tally(1000, 60), t).outcome == ABORT
    assert "e=" in responses_row(tally(1000, 60), t).statistic


def test_no_false_abort_at_the_tolerated_rate_over_a_stream_of_reads():
    """Anytime-valid: over many reads of one stream at the tolerated rate the
    row aborts in no more than alpha of the streams (a seeded simulation)."""
    import random

    t = thresholds(responses_differ_tolerated=0.02, alpha=0.01)
    rng, aborted = random.Random(7), 0
    for _ in range(300):
        differ = 0
        for pairs in range(1, 2001):
            differ += rng.random() < 0.02
            if pairs % 50 == 0 and responses_row(tally(pairs, differ), t).outcome == ABORT:
                aborted += 1
                break
    assert aborted <= 300 * 0.01 + 3  # alpha, and a little room for the simulation's own spread


@pytest.mark.parametrize("setting", [{"responses_differ_tolerated": 1.0}, {"responses_differ_tolerated": -0.1},
                                     {"responses_min_pairs": 0}])
def test_the_row_settings_are_checked(setting):
    with pytest.raises(ValueError):
        thresholds(**setting)


def test_pooled_the_hosts_tallies_add_up():
    side = Side(600, 0, ((10.0, 600), (100.0, 600)))
    windows = {h: Counters(h, 0, 0, side, side) for h in ("a", "b")}
    rows = {r.metric: r for r in pooled_rows(windows, 10, thresholds(), [tally(60, 0), tally(60, 0)])}
    assert rows["responses differ"].outcome == PASS and rows["responses differ"].domain == "0/120"
    rows = {r.metric: r for r in pooled_rows(windows, 10, thresholds(), [tally(60, 0), None])}
    assert rows["responses differ"].outcome == INCONCLUSIVE
    rows = {r.metric: r for r in pooled_rows(windows, 10, thresholds(), [None, None])}
    assert rows["responses differ"].statistic == "n/a: no paired traffic"


# --- the plan: what is repeated, how fast --------------------------------------------------------------


def test_the_budget_follows_the_real_traffic_under_the_cap():
    assert pairs_per_s(20, 0.2, 50) == 5  # 0.2 x 50 requests/s = 10 requests/s = 5 pairs/s
    assert pairs_per_s(20, 0.2, 1000) == 20
    assert pairs_per_s(20, 0.2, 0) == 0 and pairs_per_s(20, 0.2, None) == 0
    assert pairs_per_s(30, None, None) == 30
    assert math.isclose(pairs_per_s(20, 0.5, 3), 0.75)


def test_only_repeatable_gets_are_paired_and_a_write_cannot_be_marked_so():
    catalog = load_catalog([
        {"name": "status", "method": "GET", "path": "/s/{camera_id}", "expect": 200, "ignore": ["$.at"]},
        {"name": "export", "method": "GET", "path": "/export", "expect": 200, "paired": False},
        {"name": "start", "method": "POST", "path": "/start", "expect": 200},
    ])
    plan = pair_plan(catalog, {"camera_id": "c1"}, "force_domain")
    assert plan == [{"name": "status", "domain": "/s/c1?force_domain=true", "legacy": "/s/c1?force_domain=false",
                     "ignore": ["$.at"], "unordered": []}]
    with pytest.raises(CatalogError, match="only for a GET"):
        load_catalog([{"name": "start", "method": "POST", "path": "/start", "expect": 200, "paired": True}])
    with pytest.raises(CatalogError, match="ignore"):
        load_catalog([{"name": "s", "method": "GET", "path": "/s", "expect": 200, "ignore": ["at"]}])


# --- the probe's paired stream, as it runs on a host ------------------------------------------------------


def test_the_probe_compares_each_pair_and_keeps_a_tally_file(tmp_path):
    """The probe program as a host runs it (python3 -c, this module carried in
    front of the probe): every 4th domain answer of /status is wrong, /logs
    carries a timestamp that moves with every answer (learned as noise)."""
    calls: dict = {}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlsplit(self.path)
            side = "domain" if parse_qs(url.query).get("force_domain") == ["true"] else "legacy"
            with lock:
                n = calls[side, url.path] = calls.get((side, url.path), 0) + 1
            if url.path == "/status":
                body = {"running": not (side == "domain" and n % 4 == 0)}
            else:
                body = {"logs": [{"at": f"{side}-{n}", "action": "start"}]}  # moves with every answer
            self.send_response(200)
            self.send_header("X-Impl", side)
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        plan = pair_plan(load_catalog([
            {"name": "status", "method": "GET", "path": "/status", "expect": 200},
            {"name": "logs", "method": "GET", "path": "/logs", "expect": 200},
        ]), {}, "force_domain")
        tally_file = tmp_path / "pairs-abc-0.json"
        spec = {"port": server.server_address[1], "header": "X-Impl", "seconds": 30, "pairs": plan, "count": 40,
                "rate": None, "tally_file": str(tally_file)}
        result = subprocess.run(probe_argv("traffic", spec), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        pairs = json.loads(result.stdout)["pairs"]
    finally:
        server.shutdown()
    assert json.loads(tally_file.read_text()) == pairs
    assert pairs["status"]["pairs"] == 20 and 3 <= pairs["status"]["differ"] <= 7
    assert pairs["status"]["first"] == "$.running"
    assert pairs["logs"]["differ"] == 0 and pairs["logs"]["noise"] == ["$.logs[*].at"]
    assert pairs["logs"]["pairs"] + pairs["logs"]["skipped"] == 20
