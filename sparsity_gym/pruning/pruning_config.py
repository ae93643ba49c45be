"""The pruning fields of a run, validated once: :class:`PruningConfig`.

The pruning driver (:class:`sparsity_gym.pruning.Pruner`) is configured by a :class:`PruningConfig`; the env's
flat :class:`~sparsity_gym.env.env_config.EnvConfig` holds the same fields for ``gym.make`` and builds its
``PruningConfig`` with :meth:`EnvConfig.pruning <sparsity_gym.env.env_config.EnvConfig.pruning>` (its
``burn_in_epochs`` in optimizer steps, its ``total_iterations`` as ``total_steps``), so every check of a
pruning field lives here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any

from sparsity_gym.core.checks import as_python, check_choice, check_number
from sparsity_gym.core.frozen import FrozenConfig
from sparsity_gym.masks.allocation import available_allocations
from sparsity_gym.masks.regrowth import available_regrowth
from sparsity_gym.masks.selectors import GRANULARITIES, SELECTORS, available_selectors, threshold_range
from sparsity_gym.pruning.actions import ACTION_SCALES

ACTION_MODES = ("density", "threshold")
BUDGETS = ("layer", "global", "flops")
EFFECTS = ("prune", "freeze")
OBSERVATION_FAMILIES: tuple[str, ...] = ("snr", "rank", "contribution", "equilibrium")


def observation_families(value: Any) -> tuple[str, ...]:
    """``observations`` as a tuple of names (one name alone is that family: ``"snr"`` -> ``("snr",)``)."""
    families = (value,) if isinstance(value, str) else value
    return tuple(as_python(f) for f in families)


@dataclass(frozen=True)
class PruningConfig(FrozenConfig):
    """What the pruning driver does around an optimizer step; every field is checked when the config is built.

    A bad value raises ``ValueError`` naming the field, the value and what is allowed. Numpy scalars are
    stored as the Python numbers they hold. The fields mean what the same fields of
    :class:`~sparsity_gym.env.env_config.EnvConfig` mean (its docstring and the env's "Action Space" specify them);
    the two that differ are counted in optimizer steps here.

    Attributes:
        total_steps: Optimizer steps of the whole run (``EnvConfig.total_iterations``).
        decision_interval: Optimizer steps between two decisions; a divisor of ``total_steps``. Decisions
            happen before steps ``0, decision_interval, ...``; the last one (index
            ``total_steps // decision_interval - 1``) is projected onto the budget.
        granularity: ``weight`` or ``neuron``.
        selector: Which units go (:mod:`sparsity_gym.masks.selectors`).
        regrowth: How units return (:mod:`sparsity_gym.masks.regrowth`).
        selector_options: Options the selector reads.
        feedback_updates_pruned: Under ``regrowth="feedback"``, whether a step updates pruned weights' dense values.
        burn_in_steps: No mask update at decisions taken before this many optimizer steps (SNR pruning's burn-in).
        loss_hold: Skip the mask update at a decision whose interval's mean training loss is above the best so far.
        effect: ``prune`` or ``freeze`` (neuron granularity, no target density).
        action_mode: ``density`` or ``threshold``.
        exchange_fraction: Extra drop-and-regrow fraction per mask update.
        target_density: The budget the run ends on (``None``: the final density is the policy's).
        budget: What ``target_density`` constrains: ``layer``, ``global`` or ``flops``.
        allocation: ``policy`` or an allocation rule (:mod:`sparsity_gym.masks.allocation`; density mode).
        allocation_tilt: Keep the request's shape as a residual on the rule.
        action_scale: ``linear`` or ``log`` map of density actions onto ``[min_density, max_density]``.
        min_density: Lowest density an action can ask for (action -1); at most ``target_density`` in density mode.
        max_density: Highest density an action can ask for (action +1); at least ``target_density`` in density mode.
        observations: Statistic families in the observation (``snr``, ``rank``, ``contribution``,
            ``equilibrium``); the driver collects only these and what the selector and regrowth rule read.
        stats_window: The step-based statistics are collected on the last ``stats_window`` steps of each
            interval (``None``: every step).

    """

    total_steps: int
    decision_interval: int
    granularity: str = "weight"
    selector: str = "magnitude"
    regrowth: str = "random"
    selector_options: Mapping[str, Any] = field(default_factory=dict)
    feedback_updates_pruned: bool = True
    burn_in_steps: int = 0
    loss_hold: bool = False
    effect: str = "prune"
    action_mode: str = "density"
    exchange_fraction: float = 0.0
    target_density: float | None = None
    budget: str = "layer"
    allocation: str = "policy"
    allocation_tilt: bool = False
    action_scale: str = "linear"
    min_density: float = 0.02
    max_density: float = 1.0
    observations: tuple[str, ...] = ()
    stats_window: int | None = 1
    labels: InitVar[Mapping[str, str] | None] = None

    def __post_init__(self, labels: Mapping[str, str] | None) -> None:
        """Normalise numpy scalars and mappings, then validate (``labels``: other names of fields, for messages)."""
        self.normalise(("selector_options",))
        object.__setattr__(self, "observations", observation_families(self.observations))
        self.validate(labels or {})

    @property
    def num_decisions(self) -> int:
        """Decisions in the run: ``total_steps // decision_interval``."""
        return self.total_steps // self.decision_interval

    @property
    def window(self) -> int:
        """Measured steps at the end of each interval (``stats_window``, or the whole interval)."""
        return min(self.stats_window or self.decision_interval, self.decision_interval)

    def replace(self, **changes: Any) -> PruningConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def validate(self, labels: Mapping[str, str] | None = None) -> None:
        """Check every field; raise ``ValueError`` naming the first bad one (by its name in ``labels``, if any)."""
        names = {f.name: f.name for f in dataclasses.fields(self)} | dict(labels or {})
        check_choice("granularity", self.granularity, GRANULARITIES)
        check_choice("selector", self.selector, available_selectors())
        check_choice("regrowth", self.regrowth, available_regrowth())
        check_choice("effect", self.effect, EFFECTS)
        check_choice("action_mode", self.action_mode, ACTION_MODES)
        self._validate_budget()
        self._validate_selection(names)
        self._validate_densities()
        check_number(names["total_steps"], self.total_steps, low=1, integer=True)
        check_number("decision_interval", self.decision_interval, low=1, high=self.total_steps, integer=True)
        if self.total_steps % self.decision_interval:
            raise ValueError(
                f"decision_interval={self.decision_interval!r} is not allowed; expected a divisor of "
                f"{names['total_steps']}={self.total_steps}"
            )
        for family in self.observations:
            check_choice("observations", family, OBSERVATION_FAMILIES)
        if len(set(self.observations)) != len(self.observations):
            raise ValueError(f"observations={self.observations!r} is not allowed; expected each family at most once")
        if self.stats_window is not None:
            check_number("stats_window", self.stats_window, low=1, high=self.decision_interval, integer=True)

    def _validate_selection(self, names: Mapping[str, str]) -> None:
        """Hold the selector, its options, granularity, action mode and effect against the selector's one spec."""
        spec = SELECTORS.get(self.selector)
        for key, value in self.selector_options.items():
            check_choice(f"selector_options[{self.selector!r}]", key, tuple(spec.options))
            check_choice(f"selector_options[{key!r}]", value, spec.options[key])
        if self.granularity not in spec.granularities:
            raise ValueError(
                f"granularity={self.granularity!r} is not allowed with selector={self.selector!r}; expected one of: "
                + ", ".join(repr(g) for g in spec.granularities)
            )
        if self.action_mode == "threshold":
            threshold_range(self.selector)  # ValueError naming the selectors that have a threshold scale
        if self.regrowth == "feedback" and self.effect != "prune":
            raise ValueError(f"effect={self.effect!r} is not allowed with regrowth='feedback'; expected 'prune'")
        for name in ("feedback_updates_pruned", "loss_hold", "allocation_tilt"):
            check_choice(name, getattr(self, name), (True, False))
        check_number(names["burn_in_steps"], self.burn_in_steps, low=0, integer=True)
        if self.effect == "freeze" and self.granularity != "neuron":
            raise ValueError(f"granularity={self.granularity!r} is not allowed with effect='freeze'; expected 'neuron'")
        if self.effect == "freeze" and self.target_density is not None:
            raise ValueError(
                f"target_density={self.target_density!r} is not allowed with effect='freeze'; expected None "
                "(freezing does not remove units)"
            )
        check_number("exchange_fraction", self.exchange_fraction, low=0.0, high=1.0, high_inclusive=False)

    def _validate_budget(self) -> None:
        """The budget kind and the allocation rule (a rule needs requested densities: density mode)."""
        check_choice("budget", self.budget, BUDGETS)
        check_choice("allocation", self.allocation, ("policy", *available_allocations()))
        if self.allocation != "policy" and self.action_mode != "density":
            raise ValueError(
                f"allocation={self.allocation!r} is not allowed with action_mode={self.action_mode!r}; expected "
                "allocation='policy' (a rule re-allocates requested densities, and thresholds request none)"
            )
        if self.allocation_tilt and self.allocation == "policy":
            raise ValueError(
                "allocation_tilt=True is not allowed with allocation='policy'; expected an allocation rule to tilt "
                f"(one of {available_allocations()!r})"
            )

    def _validate_densities(self) -> None:
        """The action's density range, the target, and (density mode) the target inside the range."""
        check_number("min_density", self.min_density, low=0.0, high=1.0, low_inclusive=False)
        check_choice("action_scale", self.action_scale, ACTION_SCALES)
        check_number("max_density", self.max_density, low=self.min_density, high=1.0)
        target = self.target_density
        if target is None:
            return
        check_number("target_density", target, low=0.0, high=1.0, low_inclusive=False)
        if self.action_mode != "density":
            return
        jump = "a schedule would sit at that bound and jump to the target at the last decision"
        if self.max_density < target:
            raise ValueError(
                f"max_density={self.max_density!r} is not allowed with target_density={target!r}; expected "
                f"max_density >= target_density ({jump})"
            )
        if self.min_density > target:
            raise ValueError(
                f"min_density={self.min_density!r} is not allowed with target_density={target!r}; expected "
                f"min_density <= target_density ({jump})"
            )


def pruning_field_names() -> tuple[str, ...]:
    """The names of :class:`PruningConfig`'s fields (the settings the driver accepts)."""
    return tuple(f.name for f in dataclasses.fields(PruningConfig))
