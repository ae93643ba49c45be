"""How a policy meets the pruning driver: the settings it brings, the columns it reads, the predictor it binds.

A policy is any object with stable-baselines3's ``predict(observation, state=None, episode_start=None,
deterministic=True) -> (action, state)``. Optionally it has

* ``settings``: a mapping of :class:`~sparsity_gym.pruning.pruning_config.PruningConfig` fields it needs (selector,
  regrowth, effect, action mode, allocation, density range, observations...). They are merged into the run's
  config; a keyword of the user that contradicts one is a ``ValueError`` naming both values. A setting that only
  the env can honour (growth room, ``capacity > 1``) is refused with the reason.
* ``reads``: the observation columns it reads (``ObservationLayout.columns`` names). Without it a policy is
  taken to read every column. The driver collects the statistic families of those columns and no other, and
  refuses a policy that reads ``val_accuracy`` or ``train_loss`` without a validation function.
* ``bind(context)``: called with the driver once its masks and observation layout exist; returns the predictor
  (how fixed policies learn the layer widths and column indices, and how a learned policy checks the columns).

A policy may also be given by name (``"cubic@0.75+erk"``): :func:`resolve_policy` asks the name resolvers that
packages above this one registered with :func:`register_policy_names` (``baselines`` registers
``baselines.method`` when it is imported; this package imports no package above it).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sparsity_gym.observation.features import ObservationLayout
from sparsity_gym.pruning.pruning_config import OBSERVATION_FAMILIES, pruning_field_names

VALIDATION_COLUMNS = ("val_accuracy", "train_loss")
"""Columns whose values come from the user's validation function (and the losses passed to ``step``)."""

ENV_ONLY_SETTINGS = {
    "capacity": "growth room: the hidden layers built wider, with spare units to grow into, which only the env "
    "builds (gym.make('SparsityGym/Schedule-v0', ...) with the method's env_kwargs)",
}
"""Settings a policy may carry that the driver cannot honour on a user's network, with the reason."""


_NAME_RESOLVERS: dict[str, Callable[[str], Any]] = {}


def register_policy_names(owner: str, resolver: Callable[[str], Any]) -> None:
    """Let ``Pruner(model, optimizer, "name")`` take policy names: ``resolver(name)`` returns the policy.

    ``owner`` (the registering package) keys the resolver, so registering again replaces it. A resolver raises
    ``ValueError`` for a name it does not know.
    """
    _NAME_RESOLVERS[owner] = resolver


def resolve_policy(policy: Any) -> Any:
    """``policy`` itself, or the policy a registered resolver returns for a name; ``ValueError`` naming ``policy``."""
    if not isinstance(policy, str):
        return policy
    errors = []
    for owner, resolver in _NAME_RESOLVERS.items():
        try:
            return resolver(policy)
        except ValueError as err:
            errors.append(f"{owner}: {str(err).splitlines()[0]}")
    if not errors:
        raise ValueError(
            f"policy={policy!r} is a name, and no package that resolves policy names is imported; expected "
            "`import baselines` first (it resolves handcrafted cells, static schedules and criteria), or a policy "
            "object (baselines.method(name), agents.policies.load(name))"
        )
    raise ValueError(f"policy={policy!r} is not allowed; " + "; ".join(errors))


def policy_name(policy: Any) -> str:
    """A readable name for messages: the policy's ``name`` attribute or its class name."""
    name = getattr(policy, "name", None)
    return name if isinstance(name, str) else type(policy).__name__


def merge_settings(policy: Any, given: Mapping[str, Any], steps_per_epoch: int | None = None) -> dict[str, Any]:
    """The policy's ``settings`` with the user's ``given`` settings added; ``ValueError`` on a contradiction.

    A policy's ``burn_in_epochs`` (the env's unit) becomes ``burn_in_steps`` with ``steps_per_epoch``
    (``ceil(epochs * steps_per_epoch)``, as the env counts it); without ``steps_per_epoch`` the user must give
    ``burn_in_steps``. A setting the driver cannot honour (:data:`ENV_ONLY_SETTINGS`, or any name that is not a
    pruning field) is refused with a one-line reason.
    """
    settings = dict(getattr(policy, "settings", None) or {})
    fields = pruning_field_names()
    name = policy_name(policy)
    if "burn_in_epochs" in settings:
        epochs = settings.pop("burn_in_epochs")
        if steps_per_epoch is not None:
            settings["burn_in_steps"] = math.ceil(epochs * steps_per_epoch - 1e-9)
        elif "burn_in_steps" not in given:
            raise ValueError(
                f"steps_per_epoch=None is not allowed with policy {name!r}, which needs burn_in_epochs={epochs!r}; "
                "expected steps_per_epoch= the optimizer steps of one epoch (e.g. len(loader)), or burn_in_steps="
            )
    for key, value in settings.items():
        if key in ENV_ONLY_SETTINGS and not (key == "capacity" and value == 1.0):
            raise ValueError(
                f"policy {name!r} needs {key}={value!r} ({ENV_ONLY_SETTINGS[key]}); the Pruner prunes the network it "
                "is given and cannot provide it"
            )
    merged = {k: v for k, v in settings.items() if k in fields}
    unknown = sorted(set(settings) - set(merged) - set(ENV_ONLY_SETTINGS))
    if unknown:
        raise ValueError(
            f"policy {name!r} has settings {unknown!r} the Pruner does not know; expected PruningConfig fields "
            f"({', '.join(fields)})"
        )
    for key, value in given.items():
        if key in merged and not _same(merged[key], value):
            raise ValueError(
                f"{key}={value!r} contradicts policy {name!r}, which needs {key}={merged[key]!r}; expected "
                f"{merged[key]!r} or leave {key} out"
            )
        merged[key] = value
    return merged


def _same(a: Any, b: Any) -> bool:
    """Equal settings, sequences compared as tuples (``("snr",)`` and ``["snr"]``), a string as a 1-tuple."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        as_tuple = [(x,) if isinstance(x, str) else tuple(x) if isinstance(x, (list, tuple)) else x for x in (a, b)]
        return bool(as_tuple[0] == as_tuple[1])
    return bool(a == b)


def declared_reads(policy: Any) -> tuple[str, ...] | None:
    """The columns ``policy`` says it reads (its ``reads``), or ``None`` when it does not say."""
    reads = getattr(policy, "reads", None)
    return None if reads is None else tuple(reads)


def families_read(reads: tuple[str, ...] | None) -> tuple[str, ...]:
    """The statistic families whose columns ``reads`` names (every family when ``reads`` is ``None``)."""
    if reads is None:
        return OBSERVATION_FAMILIES
    base = set(ObservationLayout(1).columns)
    return tuple(f for f in OBSERVATION_FAMILIES if set(ObservationLayout(1, (f,)).columns) - base & set(reads))


def default_interval(total_steps: int, decisions: int = 10) -> int:
    """The divisor of ``total_steps`` whose number of decisions is closest to ``decisions`` (by ratio; ties: more).

    Only divisors giving between 2 and 100 decisions are considered; ``ValueError`` naming ``decision_interval``
    when there is none (e.g. a prime number of steps): then one must be passed.
    """
    candidates = [d for d in range(1, total_steps + 1) if total_steps % d == 0 and 2 <= total_steps // d <= 100]
    if not candidates:
        raise ValueError(
            f"decision_interval=None is not allowed with total_steps={total_steps}: no divisor of it gives between "
            "2 and 100 decisions; expected decision_interval= a divisor of total_steps"
        )
    return min(candidates, key=lambda d: (abs(np.log(total_steps / d / decisions)), d))


def bind(policy: Any, context: Any) -> Any:
    """The predictor of ``policy`` on ``context`` (``policy.bind(context)`` when it has one, else the policy)."""
    binder = getattr(policy, "bind", None)
    predictor = binder(context) if callable(binder) else policy
    if not callable(getattr(predictor, "predict", None)):
        raise ValueError(
            f"policy={policy_name(policy)!r} is not allowed; expected an object with stable-baselines3's "
            "predict(observation, state=None, episode_start=None, deterministic=True), or bind(context) returning one"
        )
    return predictor


def check_reads(policy: Any, reads: tuple[str, ...], layout: ObservationLayout, validates: bool) -> None:
    """Refuse a policy whose columns the layout lacks, or that reads validation columns with no validation."""
    name = policy_name(policy)
    missing = [c for c in reads if c not in layout.columns]
    if missing:
        raise ValueError(
            f"policy {name!r} reads columns {missing!r} that the observation lacks; expected observations= to "
            f"name their families (columns: {', '.join(layout.columns)})"
        )
    needs = [c for c in VALIDATION_COLUMNS if c in reads]
    if needs and not validates:
        raise ValueError(
            f"val_fn=None is not allowed with policy {name!r}, which reads {needs!r}; expected a callable returning "
            "the validation accuracy, or (accuracy, loss)"
        )
    space = getattr(policy, "observation_space", None)
    shape = getattr(space, "shape", None)
    if shape is not None and len(shape) == 2 and shape[1] != len(layout.columns):
        raise ValueError(
            f"policy {name!r} reads observations of {shape[1]} columns; the Pruner's observation has "
            f"{len(layout.columns)} ({', '.join(layout.columns)}): expected the observations= it was trained with"
        )


def takes_state(predictor: Any) -> bool:
    """Whether ``predictor.predict`` accepts ``state`` and ``episode_start`` (recurrent policies need them)."""
    try:
        params = inspect.signature(predictor.predict).parameters
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    return "state" in params and "episode_start" in params
