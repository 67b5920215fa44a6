"""Overrides for the sandbox fleet (hosts of inventories/sandbox.py)."""

#: The reference service sees no other traffic: drive smoke traffic (unforced)
#: and paired traffic (both implementations forced, read-only) during the
#: baseline read and the gate so the gate has data to judge.
smoke_traffic = True
paired_traffic = True
