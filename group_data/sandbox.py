"""Overrides for the sandbox fleet (hosts of inventories/sandbox.py)."""

#: The reference service sees no other traffic: drive smoke traffic (unforced)
#: and paired traffic (both implementations forced, read-only) during the
#: baseline read and the gate so the gate has data to judge.
smoke_traffic = True
paired_traffic = True
#: Nothing else runs on these hosts (no real traffic to budget against): the
#: cap alone, 30 pairs a second, gives a gate 500 requests of each
#: implementation in about 17 s.
paired_share = None
paired_pairs_per_s = 30

#: The seed's timetable, a week per second (10 %: 0.14-0.3 s ... 100 %: 1-2 s):
#: no stage change waits here; the watch's tests give their own durations in seconds.
time_compression = 7 * 86400
#: The sandbox's watch promotes by itself, judging each tick over 20 s of
#: synthetic traffic (500 requests of each implementation per host).
auto_promote = True
watch_soak_s = 20
