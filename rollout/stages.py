"""The stage plan: which stages exist, how a stage maps to the app's switch, and
which moves between stages are allowed.

Pure functions only: deploy.py, the rollback task, the CLI and the tests all call
these, so a stage is validated the same way wherever it comes from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rollout.project import defaults

#: The release plan of group_data/all.py (``stage_plan``: the seed's 10, 25, 50, 100).
DEFAULT_PLAN: tuple[int, ...] = tuple(defaults()["stage_plan"])

#: Stage 0 is "rolled back": the domain implementation is switched off entirely.
ROLLBACK_STAGE = 0


def switch_names(variables: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The names of the switch the app reads at start-up, (enabled, percent):
    the ``switch_variables`` setting (group_data/all.py when not given)."""
    variables = variables or defaults()["switch_variables"]
    return variables["enabled"], variables["percent"]


class StageError(ValueError):
    """A stage or a stage move that must be refused before any host is touched."""


def validate_plan(plan: Sequence[int]) -> tuple[int, ...]:
    """Check a stage plan: strictly increasing percents in 1..100, ending at 100."""
    try:
        stages = tuple(int(p) for p in plan)
    except (TypeError, ValueError):
        raise StageError(f"stage plan must be a list of percents, got {plan!r}") from None
    if not stages:
        raise StageError("stage plan is empty")
    if any(not 0 < p <= 100 for p in stages):
        raise StageError(f"stage plan percents must be within 1..100, got {list(stages)}")
    if list(stages) != sorted(set(stages)):
        raise StageError(f"stage plan must be strictly increasing, got {list(stages)}")
    if stages[-1] != 100:
        raise StageError(f"stage plan must end at 100, got {list(stages)}")
    return stages


def allowed_stages(plan: Sequence[int] = DEFAULT_PLAN) -> tuple[int, ...]:
    """Every stage a host may be put on: 0 (rolled back) and the plan's stages."""
    return (ROLLBACK_STAGE, *validate_plan(plan))


def parse_stage(value: object, plan: Sequence[int] = DEFAULT_PLAN) -> int:
    """Turn an operator's stage (int or text) into a stage of the plan, or refuse it.

    ``None`` means the operator forgot it; a bool is refused because pyinfra's
    ``--data`` parses ``stage=true`` into one.
    """
    allowed = allowed_stages(plan)
    choices = ", ".join(str(s) for s in allowed)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise StageError(f"no stage given: pass --data stage=N with N one of {choices}")
    if isinstance(value, bool):
        raise StageError(f"stage must be one of {choices}, got {value!r}")
    try:
        stage = int(str(value).strip().rstrip("%"))
    except ValueError:
        raise StageError(f"stage must be one of {choices}, got {value!r}") from None
    if stage not in allowed:
        raise StageError(f"stage must be one of {choices}, got {stage}")
    return stage


def rollout_env(stage: int, variables: Mapping[str, str] | None = None) -> dict[str, str]:
    """The two switch variables the app reads at start-up for a stage, enabled
    first (``variables``: the ``switch_variables`` setting).

    Stage 0 is the seed's global rollback: ``USE_DOMAIN_SERVICE=false`` and
    ``ROLLOUT_PERCENT=0``.
    """
    enabled, percent = switch_names(variables)
    return {enabled: "true" if stage > ROLLBACK_STAGE else "false", percent: str(stage)}


def stage_from_env(env: Mapping[str, str], variables: Mapping[str, str] | None = None) -> int | None:
    """Read the stage back from switch variables (an env file or a process's
    environment); ``None`` when they are missing or make no stage."""
    enabled, percent_name = switch_names(variables)
    use = env.get(enabled, "").strip().lower()
    percent = env.get(percent_name, "").strip()
    if use not in ("true", "false") or not percent.isdigit():
        return None
    return int(percent) if use == "true" else ROLLBACK_STAGE


def stage_from_env_lines(lines, variables: Mapping[str, str] | None = None) -> int | None:
    """The stage of an env file's ``KEY=VALUE`` lines (comments and other lines
    are ignored); ``None`` when they make no stage."""
    return stage_from_env(dict(line.strip().split("=", 1) for line in lines if "=" in line), variables)


def next_stage(current: int, plan: Sequence[int] = DEFAULT_PLAN) -> int | None:
    """The stage after ``current`` in the plan; ``None`` when already at 100."""
    stages = allowed_stages(plan)
    if current not in stages:
        raise StageError(f"current stage {current} is not in the plan {list(stages)}")
    later = [s for s in stages if s > current]
    return later[0] if later else None


def check_move(
    current: int | None,
    target: int,
    plan: Sequence[int] = DEFAULT_PLAN,
    allow_skip: bool = False,
) -> None:
    """Refuse a forward move that skips a stage of the plan (unless allowed).

    Going back (to any earlier stage, or 0) is always allowed: that is how an
    operator steps back after a bad observation. ``current=None`` (unknown)
    only allows the first stage of the plan or a rollback.
    """
    stages = allowed_stages(plan)
    if target not in stages:
        raise StageError(f"stage must be one of {', '.join(map(str, stages))}, got {target}")
    if allow_skip or target <= (current or 0):
        return
    expected = next_stage(current or 0, plan)
    if target != expected:
        raise StageError(
            f"stage {target} skips the plan: from {current or 0} the next stage is "
            f"{expected} (pass --allow-skip to skip on purpose)"
        )
