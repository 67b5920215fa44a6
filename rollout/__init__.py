"""Staged canary rollout of a systemd-run web service, driven by pyinfra."""
