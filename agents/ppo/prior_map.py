"""The actor's prior, computed for a whole batch of observations in one pass (no per-row loop, no cache).

A prior is a *static point* the residual actor starts from (:mod:`agents.ppo.layerwise_policy`): either a handcrafted
schedule with its window (``cubic``, ``cosine@0.9``, :mod:`baselines.handcrafted` without its ``+rule``) or a static
schedule of :mod:`baselines.static` (``poly[s=..,e=..,p=..]``, optionally ``+rule[first=..,last=..]``). From
the observation's ``progress`` and ``target_density`` columns it gives the global density ``d(t)`` of the
schedule (:mod:`baselines.schedules`: the polynomial of AGP, Zhu & Gupta 2017, eq. 1, the cosine, the constant),
then the per-layer request: ``d(t)`` everywhere, or, with first/last multipliers, the water-filled
``clip(c * m_l * d(t), min_density, 1)`` whose weighted mean is ``d(t)`` (:class:`baselines.static.StaticPolicy`,
weights from the ``param_share`` column, the first row and the last valid row multiplied). The allocation rule
of a static point is the env's (:func:`prior_env`), as for a tuned cell.

The water level is found by the same bisection as :func:`sparsity_gym.pruning.projection.bisect_level`
(lower end 0, upper end ``max_l 1 / (m_l d)``, at most 200 halvings, stop when the midpoint equals an end), run on
every row of the batch at once, so the vectorised prior equals the scalar one to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from baselines.handcrafted import parse_cell
from baselines.schedules import DEFAULT_P_END, DEFAULT_P_START, SCHEDULES
from baselines.static import is_static, parse_static
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.pruning.actions import to_action
from sparsity_gym.pruning.projection import bisect_levels

NO_PRIOR = "none"
_POWERS = {"linear": 1.0, "quadratic": 2.0, "cubic": 3.0}


@dataclass(frozen=True)
class PriorSpec:
    """What a prior's name says: the shape (``poly`` for a power), its window and power, multipliers and rule."""

    shape: str
    start: float = DEFAULT_P_START
    end: float = DEFAULT_P_END
    exponent: float = 3.0
    first: float = 1.0
    last: float = 1.0
    allocation: str | None = None

    @property
    def multiplied(self) -> bool:
        """Whether a multiplier differs from 1 (the request is then tilted and water-filled)."""
        return self.first != 1.0 or self.last != 1.0


def parse_prior(prior: str) -> PriorSpec:
    """The :class:`PriorSpec` of a prior's name; ``ValueError`` naming the prior and what is allowed."""
    if is_static(prior):
        try:
            knobs = parse_static(prior)
        except ValueError as exc:
            raise ValueError(f"prior={prior!r}: {str(exc).partition(': ')[2] or exc}") from None
        return PriorSpec("poly", knobs.start, knobs.end, knobs.exponent, knobs.first, knobs.last, knobs.allocation)
    try:
        shape, end, allocation = parse_cell(prior)
    except ValueError:
        raise ValueError(
            f"prior={prior!r} is not allowed; expected {NO_PRIOR!r}, a schedule of {tuple(SCHEDULES)!r} optionally "
            "with its window end (e.g. 'cubic@0.9'), or a static point (e.g. 'poly[s=0.2,e=0.9,p=6]+uniform[first=12]')"
        ) from None
    if allocation is not None:
        raise ValueError(
            f"prior={prior!r} is not allowed; expected a schedule without '+allocation' (e.g. "
            f"{prior.partition('+')[0]!r}): the allocation rule is the env's (EnvConfig.allocation, with "
            "allocation_tilt=True for a residual on it)"
        )
    if shape in _POWERS:
        return PriorSpec("poly", end=DEFAULT_P_END if end is None else end, exponent=_POWERS[shape])
    return PriorSpec(shape, end=DEFAULT_P_END if end is None or shape == "constant" else end)


def prior_columns(prior: str) -> tuple[str, ...]:
    """The observation columns a prior reads (``param_share`` only with first/last multipliers)."""
    if prior == NO_PRIOR:
        return ()
    return ("progress", "target_density", *(("param_share",) if parse_prior(prior).multiplied else ()))


def prior_env(prior: str, env: EnvConfig) -> EnvConfig:
    """The env a prior plays on: a static point's rule becomes ``allocation`` with ``allocation_tilt``.

    A prior without a rule leaves ``env`` as it is (a handcrafted schedule: the env's own allocation); a static
    point without a rule asks for ``allocation='policy'``. With the tilt on, a uniform request is the rule's
    allocation exactly, so the untrained residual policy plays the static point itself.
    """
    if not is_static(prior):
        return env
    rule = parse_prior(prior).allocation
    if rule is None:
        return env.replace(allocation="policy", allocation_tilt=False)
    return env.replace(allocation=rule, allocation_tilt=True)


def global_density(spec: PriorSpec, progress: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``d(t)`` of the prior's schedule for arrays of progress and target (a target <= 0, none set, reads 1)."""
    target = np.where(target > 0.0, target, 1.0)
    if spec.shape == "constant":
        return target
    q = np.clip((progress - spec.start) / (spec.end - spec.start), 0.0, 1.0)
    if spec.shape == "cosine":
        return target + (1.0 - target) * (1.0 + np.cos(np.pi * q)) / 2.0
    return target + (1.0 - target) * (1.0 - q) ** spec.exponent


def multipliers(spec: PriorSpec, valid: np.ndarray) -> np.ndarray:
    """``(n, rows)``: ``first`` on row 0, ``last`` on the last valid row (one layer: both), 1 elsewhere, 0 on pads."""
    m = valid.astype(np.float64)
    count = valid.sum(-1).astype(np.int64)
    m[:, 0] *= spec.first
    rows = np.arange(valid.shape[0])
    m[rows, np.maximum(count - 1, 0)] *= spec.last
    return m * valid


def water_fill(shared: np.ndarray, factors: np.ndarray, weights: np.ndarray, low: float) -> np.ndarray:
    """Batched :func:`sparsity_gym.pruning.budget.tilted` with one floor: ``clip(c * shared * m, low, 1)``.

    ``shared``, ``factors`` and ``weights`` are ``(n, rows)`` (padding: weight 0); each row's level ``c`` keeps
    the weighted mean of ``shared``, found by :func:`~sparsity_gym.pruning.projection.bisect_levels` (the
    package's one bisection, every row at once). Rows whose
    factors are all equal keep ``shared`` as it is (as ``tilted`` does).
    """
    valid = weights > 0.0
    base = shared * np.maximum(factors, 1e-12)
    budget = (weights * shared).sum(-1)
    low_ = min(float(low), 1.0)

    def cost(level: np.ndarray) -> np.ndarray:
        return (weights * np.clip(level[:, None] * base, low_, 1.0)).sum(-1)

    inverse = np.where(valid, 1.0 / np.where(valid, base, 1.0), -np.inf)
    hi = bisect_levels(cost, budget, inverse.max(-1))
    out = np.clip(hi[:, None] * base, low_, 1.0)
    first = np.take_along_axis(factors, np.zeros((len(factors), 1), dtype=np.int64), -1)
    uniform = np.all(np.where(valid, factors == first, True), -1)
    return np.where(uniform[:, None], shared, out)


class PriorMap:
    """A prior's per-layer densities and actions for a batch of observation rows, in one vectorised pass.

    Args:
        prior: The prior's name (see the module doc).
        feature_names: The observation's column names (without the validity column).
        density_range: The env's ``(min_density, max_density)``.
        action_scale: The env's ``action_scale`` (``linear`` or ``log``).

    Raises:
        ValueError: A bad prior, or a prior whose columns the observation lacks.

    """

    def __init__(
        self, prior: str, feature_names: Sequence[str], density_range: tuple[float, float], action_scale: str
    ) -> None:
        self.spec = parse_prior(prior)
        self.prior = prior
        missing = [c for c in prior_columns(prior) if c not in feature_names]
        if missing:
            raise ValueError(
                f"prior={prior!r} is not allowed without the observation columns {missing}; pass the env's "
                "feature_names (FamilyEnv.feature_names) or prior='none'"
            )
        names = list(feature_names)
        self.columns = [names.index(c) for c in prior_columns(prior)]
        self.density_range = (float(density_range[0]), float(density_range[1]))
        self.action_scale = action_scale

    def densities(self, features: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The request ``(n, rows)`` (float64) for features ``(n, rows, F)`` and validity ``(n, rows)``."""
        features = np.asarray(features, dtype=np.float64)
        valid = np.asarray(valid, dtype=bool)
        progress = features[..., self.columns[0]]
        target = features[..., self.columns[1]]
        density = global_density(self.spec, progress, target)
        if not self.spec.multiplied:
            return density
        weights = np.where(valid, features[..., self.columns[2]], 0.0)
        return water_fill(density, multipliers(self.spec, valid), weights, self.density_range[0])

    def actions(self, features: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The prior's actions ``(n, rows)`` (float32, the env's map); padding rows hold the map of ``d(t)``."""
        return to_action(self.densities(features, valid), *self.density_range, self.action_scale)


def residual_for_factor(factor: float, density_range: tuple[float, float], action_scale: str = "log") -> float:
    """The residual, in action units, that multiplies a layer's requested density by ``factor`` on the log map.

    On the log map ``a = 2 ln(d / lo) / ln(hi / lo) - 1``, so ``ln(factor)`` in log-density is
    ``2 ln(factor) / ln(hi / lo)`` in action units (``±log 20``: ``×20`` and ``/20``, within the map's range).
    """
    if action_scale != "log":
        raise ValueError(
            f"action_scale={action_scale!r} is not allowed for a density factor; expected 'log' (on the linear map "
            "a factor is no fixed residual)"
        )
    lo, hi = density_range
    return float(2.0 * np.log(factor) / np.log(hi / lo))
