"""The rollout switch: which implementation (legacy or domain) serves a request."""
import random


def should_use_domain(force_domain: bool | None, use_domain_service: bool,
                      rollout_percent: int, rng=random) -> bool:
    """Return True when the domain implementation should serve this request.

    An explicit ?force_domain wins (verification runs must be able to hit either side);
    otherwise the domain side is used only when the service switch is on, and then for
    rollout_percent percent of requests (0 never, 100 always).
    """
    if force_domain is not None:
        return force_domain
    if not use_domain_service or rollout_percent <= 0:
        return False
    return rollout_percent >= 100 or rng.random() * 100 < rollout_percent
