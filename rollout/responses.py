"""Compare the two answers of a paired request: the same GET forced to the
domain and to legacy, back to back. Diffy's idea on one host: a difference
counts only where legacy agrees with itself.

Runs on the host inside the probe (rollout/probe.py sends this file in front of
rollout/hostprobe.py), so: python3's standard library only, no ``from
__future__``, and names that do not clash with the probe's.

An endpoint of the catalog may declare JSON paths whose values may differ
(``ignore``: timestamps, generated ids) and arrays whose order may differ
(``unordered``), as patterns: ``$``, ``.key``, ``[*]`` (any element), ``[3]``,
e.g. ``$.rules[*].updated_at``. Undeclared noise is learned: when the two
answers differ, legacy is asked once more; every path where legacy's two
answers differ is noise of that endpoint from then on (generalised to any
element: ``$.logs[*].timestamp``), and the pair counts as differing only if a
difference remains outside the noise. What is kept per endpoint (the *tally*)
holds counts and JSON paths only, never a value: an answer may carry data that
must not leave the host.
"""

import json
import re
from typing import Any

#: The most paths one comparison reports (a wholly different answer has many).
MAX_PATHS = 20
#: The most noise patterns learned per endpoint: beyond, the endpoint's answers
#: are not comparable and every further difference counts.
MAX_NOISE = 50


class ResponsePathError(ValueError):
    """A JSON path pattern that cannot be read; one line."""


def parse_path(pattern):
    """``$.rules[*].updated_at`` -> ("rules", "*", "updated_at"); ResponsePathError otherwise."""
    if not isinstance(pattern, str) or not pattern.startswith("$"):
        raise ResponsePathError(f"a JSON path starts with $, got {pattern!r}")
    tokens: list[Any] = []
    rest = pattern[1:]
    while rest:
        if rest.startswith("."):
            end = min([i for i in (rest.find(".", 1), rest.find("[", 1)) if i > 0] or [len(rest)])
            key = rest[1:end]
            if not key:
                raise ResponsePathError(f"an empty key in {pattern!r}")
            tokens.append(key)
            rest = rest[end:]
        elif rest.startswith("["):
            end = rest.find("]")
            inside = rest[1:end] if end > 0 else ""
            if inside == "*":
                tokens.append("*")
            elif inside.isdigit():
                tokens.append(int(inside))
            else:
                raise ResponsePathError(f"[*] or [index] expected in {pattern!r}")
            rest = rest[end + 1:]
        else:
            raise ResponsePathError(f"'.key' or '[...]' expected after {pattern[:len(pattern) - len(rest)]!r}")
    return tuple(tokens)


#: A key shown in a reported path: a field's name. Anything else (dashes, many
#: digits, long: a key that is data, such as a token or an id) is shown as <key>.
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")


def _shown(key):
    return key if _FIELD_NAME.fullmatch(key) and sum(c.isdigit() for c in key) <= 3 else "<key>"


def format_path(tokens, mask_keys=False):
    """("rules", 0, "threshold") -> ``$.rules[0].threshold``; ``mask_keys``: a
    key that may be data is shown as ``<key>`` (what leaves the host)."""
    text = "$"
    for token in tokens:
        if isinstance(token, int) or token == "*":
            text += f"[{token}]"
        else:
            text += f".{_shown(token) if mask_keys else token}"
    return text


def _matches(pattern, tokens):
    return len(pattern) == len(tokens) and all(p == "*" or p == t for p, t in zip(pattern, tokens))


def _general(tokens):
    """Every array index as ``*``: noise seen at one element is noise at all."""
    return tuple("*" if isinstance(t, int) else t for t in tokens)


def normalise(document, ignore=(), unordered=(), here=()):
    """``document`` with the values at ``ignore`` patterns blanked and the arrays
    at ``unordered`` patterns sorted (by their canonical JSON)."""
    if any(_matches(p, here) for p in ignore):
        return "<ignored>"
    if isinstance(document, dict):
        return {key: normalise(value, ignore, unordered, here + (key,)) for key, value in document.items()}
    if isinstance(document, list):
        items = [normalise(value, ignore, unordered, here + (index,)) for index, value in enumerate(document)]
        if any(_matches(p, here) for p in unordered):
            items.sort(key=lambda item: json.dumps(item, sort_keys=True))
        return items
    return document


def _kind(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"  # 1 and 1.0 are the same JSON number
    return type(value).__name__


def differences(a, b, here=(), limit=MAX_PATHS):
    """The paths (token tuples) where ``a`` and ``b`` differ, at most ``limit``:
    a value, a type, a key present on one side only, an array's length (at the
    first extra element)."""
    found: list[tuple] = []

    def walk(x, y, at):
        if len(found) >= limit:
            return
        if _kind(x) != _kind(y):
            found.append(at)
        elif isinstance(x, dict):
            for key in sorted(set(x) | set(y)):
                if key not in x or key not in y:
                    found.append(at + (key,))
                else:
                    walk(x[key], y[key], at + (key,))
                if len(found) >= limit:
                    return
        elif isinstance(x, list):
            for index in range(min(len(x), len(y))):
                walk(x[index], y[index], at + (index,))
            if len(x) != len(y) and len(found) < limit:
                found.append(at + (min(len(x), len(y)),))
        elif x != y:
            found.append(at)

    walk(a, b, here)
    return found[:limit]


def comparable(answer):
    """An answer to compare: the service answered, not with a server error (an
    error is the error rows' evidence, not a difference of data), and whole
    (a body cut at the probe's limit is not)."""
    status = answer.get("status")
    return status is not None and status < 500 and not answer.get("truncated")


def _document(answer):
    """The answer's JSON document, or its text when it is not JSON."""
    try:
        return json.loads(answer.get("body") or "")
    except ValueError:
        return {"<text>": answer.get("body") or ""}


def answers_differ(domain, legacy, ignore=(), unordered=()):
    """The paths where two comparable answers differ, after normalisation; the
    status first when the statuses differ."""
    if domain.get("status") != legacy.get("status"):
        return [("<status>",)]
    return differences(normalise(_document(domain), ignore, unordered),
                       normalise(_document(legacy), ignore, unordered))


def _empty():
    return {"pairs": 0, "differ": 0, "skipped": 0, "first": None, "noise": []}


def _learnable(path):
    """A field's path may become noise; not the whole answer, its status or text,
    nor an array's element or length (a list that changed would hide all of it)."""
    return bool(path) and path[0] not in ("<status>", "<text>") and not (isinstance(path[-1], int) or path[-1] == "*")


class PairTally:
    """The comparisons of one stream, per endpoint name: pairs compared,
    pairs that differ, pairs not comparable (an error, no answer, or legacy
    changing between its two answers), the first differing path, the noise
    learned. ``as_json()`` is what the gate reads."""

    def __init__(self, endpoints):
        #: name -> (ignore patterns, unordered patterns), parsed
        self.rules = {e["name"]: ([parse_path(p) for p in e.get("ignore") or ()],
                                  [parse_path(p) for p in e.get("unordered") or ()]) for e in endpoints}
        self.counts: dict[str, dict[str, Any]] = {name: _empty() for name in self.rules}
        self.noise: dict[str, list[tuple]] = {name: [] for name in self.rules}
        #: name -> pattern -> pairs in which legacy's two answers differed there
        self.moved: dict[str, dict[tuple, int]] = {name: {} for name in self.rules}

    def compare(self, name, legacy, domain, legacy_after):
        """Judge one pair: legacy asked, then the domain; ``legacy_after()`` asks
        legacy once more, only when the two differ. A difference counts only
        where the domain differs from both legacy answers while they agree
        there: a change of the data between the calls (a clock, a user's write)
        is not the domain's. Returns "same", "differ" or "skipped"."""
        counts = self.counts[name]
        if not (comparable(domain) and comparable(legacy)):
            counts["skipped"] += 1
            return "skipped"
        ignore, unordered = self.rules[name]
        known = ignore + self.noise[name]
        before = answers_differ(domain, legacy, known, unordered)
        if before:
            after = legacy_after()
            if not comparable(after):
                counts["skipped"] += 1
                return "skipped"
            moved = {_general(p) for p in answers_differ(after, legacy, known, unordered)}
            if ("<status>",) in moved:  # legacy itself answered two statuses: nothing to judge by
                counts["skipped"] += 1
                return "skipped"
            self._learn(name, moved)
            also = {tuple(p) for p in answers_differ(domain, after, known, unordered)}
            before = [p for p in before if tuple(p) in also and _general(p) not in moved]
        counts["pairs"] += 1
        if not before:
            return "same"
        counts["differ"] += 1
        if counts["first"] is None:
            counts["first"] = (f"HTTP {domain.get('status')} against {legacy.get('status')}"
                               if before[0] == ("<status>",) else "the body (not JSON)" if before[0] == ("<text>",)
                               else format_path(before[0], mask_keys=True))
        return "differ"

    def _learn(self, name, moved):
        """A leaf path where legacy's two answers differed in two pairs is noise
        from then on (once may be a write between the calls)."""
        noise, seen = self.noise[name], self.moved[name]
        for pattern in moved:
            if not _learnable(pattern) or pattern in noise:
                continue
            seen[pattern] = seen.get(pattern, 0) + 1
            if seen[pattern] >= 2 and len(noise) < MAX_NOISE:
                noise.append(pattern)
        self.counts[name]["noise"] = [format_path(p, mask_keys=True) for p in noise]

    def as_json(self):
        return self.counts


def add_tallies(tallies):
    """Tallies summed per endpoint (the pooled hosts, or two streams): counts
    added, the first differing path of the first tally that has one, noise
    united. Anything not of a tally's shape is left out."""
    total: dict[str, dict[str, Any]] = {}
    for tally in tallies:
        if not isinstance(tally, dict):
            continue
        for name, counts in tally.items():
            if not isinstance(counts, dict):
                continue
            into = total.setdefault(name, _empty())
            for key in ("pairs", "differ", "skipped"):
                value = counts.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    into[key] += value
            into["first"] = into["first"] or (counts.get("first") if isinstance(counts.get("first"), str) else None)
            into["noise"] += [p for p in counts.get("noise") or () if isinstance(p, str) and p not in into["noise"]]
    return total
