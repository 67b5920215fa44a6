"""Overrides for the sandbox fleet (hosts of inventories/sandbox.py)."""

#: The reference service sees no other traffic: drive smoke traffic (unforced)
#: and paired traffic (both implementations forced, read-only) during the
#: baseline read and the gate so the gate has data to judge.
smoke_traffic = True
paired_traffic = True
#: Nothing else runs on these hosts: 30 pairs a second give a gate 500 requests
#: of each implementation in about 17 s.
paired_pairs_per_s = 30
