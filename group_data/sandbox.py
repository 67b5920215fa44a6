"""Overrides for the sandbox fleet (hosts of inventories/sandbox.py)."""

#: The reference service sees no other traffic: drive smoke traffic during the
#: baseline read and the soak window so the gate has data to judge.
smoke_traffic = True
