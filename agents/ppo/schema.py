"""What a saved policy expects of an env, and the check that an env provides it (or a one-line refusal).

A :class:`agents.ppo.layerwise_policy.LayerwisePolicy` reads observation columns by position and writes actions that the
env maps onto densities. Two arrays of the same shape can mean different things: the same columns in another order,
a log action map instead of a linear one, another density range, thresholds instead of densities. So a model
records its **schema** (a plain, JSON-ready dict, saved with the model as a policy keyword, see
:mod:`agents.ppo.layerwise_policy`):

* ``columns``: the observation's column names per layer row, in order (without the padding's validity column);
* the action's meaning, :data:`AGREEMENT`: ``action_mode``, ``action_scale``, ``min_density``, ``max_density``,
  ``allocation`` and ``allocation_tilt`` (a rule re-shares the requested densities, a tilt reads them as a
  residual on it: the same action asks for other densities without them);
* ``prior``: the handcrafted schedule the actor is a residual on (``"none"``: none);
* ``env``: the env settings it trained with (:data:`ENV_FIELDS`), ``task`` and ``train_networks``, so that a user
  can apply it under the conditions it was trained for. These are recorded, not enforced: a policy is meant to
  run on other networks, targets and selectors.

:func:`check_agreement` compares a schema with anything that has ``.layout.columns`` and ``.config`` (a gym env,
through ``.unwrapped``; :class:`sparsity_gym.experiments.family_env.FamilyEnv`; the pruning driver) and raises a
``ValueError`` naming the field, the env's value and the model's. A model saved before the schema existed has a
*legacy* schema (:func:`legacy_schema`): what it recorded, its column names and its action scale, is checked.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

SCHEMA_VERSION = 1

AGREEMENT: tuple[str, ...] = (
    "action_mode",
    "action_scale",
    "min_density",
    "max_density",
    "allocation",
    "allocation_tilt",
)
"""The env settings that decide what an action means; a model and an env must agree on every one it records."""

ENV_FIELDS: tuple[str, ...] = (
    "observations",
    "allocation",
    "allocation_tilt",
    "budget",
    "target_density",
    "selector",
    "regrowth",
    "granularity",
    "total_iterations",
    "decision_interval",
    "dataset",
)
"""The env settings a model records for the user (``schema["env"]``); not enforced."""

_HINTS = {
    "action_mode": "what an action is (a density or a score threshold)",
    "action_scale": "how an action maps onto a density",
    "min_density": "the density an action of -1 asks for",
    "max_density": "the density an action of +1 asks for",
    "allocation": "how requested densities are shared out across the layers",
    "allocation_tilt": "whether actions are a residual on the allocation rule",
}


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples as lists), so a saved and a fresh schema compare equal."""
    return json.loads(json.dumps(value, default=str))


def model_schema(
    columns: Sequence[str],
    config: Any,
    prior: str = "none",
    task: str | None = None,
    train_networks: Sequence[str] = (),
    ranges: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The schema of a model trained on envs of ``config`` (an ``EnvConfig``) whose rows have ``columns``.

    ``ranges``: what a run across settings saw (``targets``, ``families``, ``networks``, ``depths``;
    :mod:`agents.settings.generalist`), recorded as ``schema["ranges"]``; :func:`outside_training` then warns outside
    them.
    """
    schema: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "columns": list(columns)}
    schema.update({name: getattr(config, name) for name in AGREEMENT})
    schema["prior"] = prior
    schema["env"] = {name: getattr(config, name) for name in ENV_FIELDS}
    schema["task"] = task
    schema["train_networks"] = list(train_networks)
    if ranges is not None:
        schema["ranges"] = dict(ranges)
    return _plain(schema)


def legacy_schema(feature_names: Sequence[str], action_scale: str, prior: str = "none") -> dict[str, Any]:
    """What a model saved without a schema recorded: its column names (validity last) and its action scale."""
    columns = [c for c in feature_names if c != "valid"]
    schema: dict[str, Any] = {"schema_version": 0, "action_scale": action_scale, "prior": prior}
    if columns:
        schema["columns"] = columns
    return _plain(schema)


def normalize_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` as a plain JSON-ready dict (``ValueError`` unless it is a mapping with a ``schema_version``)."""
    if not isinstance(schema, Mapping) or "schema_version" not in schema:
        raise ValueError(
            f"schema={schema!r} is not allowed; expected a dict from agents.ppo.schema.model_schema (with "
            f"schema_version)"
        )
    return _plain(dict(schema))


def env_side(target: Any) -> tuple[Any, Any]:
    """``(layout, config)`` of an env (through ``.unwrapped``), a family env or a pruning driver.

    Raises:
        ValueError: ``target`` has no ``layout.columns``.

    """
    inner = getattr(target, "unwrapped", target)
    layout = getattr(inner, "layout", None)
    if layout is None or not hasattr(layout, "columns"):
        raise ValueError(
            f"env={type(target).__name__} is not allowed; expected an env or pruning driver with .layout.columns "
            "and .config (a SparsityEnv, a wrapper of one, a FamilyEnv or a sparsity_gym.Pruner)"
        )
    return layout, getattr(inner, "config", None)


def env_columns(layout: Any) -> list[str]:
    """The layout's column names in column order (a ``{name: index}`` mapping or a sequence of names)."""
    columns = layout.columns
    if isinstance(columns, Mapping):
        return [name for name, _ in sorted(columns.items(), key=lambda item: item[1])]
    return [str(c) for c in columns]


def check_agreement(schema: Mapping[str, Any], target: Any, fields: Sequence[str] = AGREEMENT) -> None:
    """Refuse ``target`` (see :func:`env_side`) unless its columns and action settings are the model's.

    Only what ``schema`` records is compared (a legacy schema: its columns and action scale); ``fields`` limits
    the action settings compared.

    Raises:
        ValueError: One line naming the field, the env's value and the model's.

    """
    layout, config = env_side(target)
    columns = env_columns(layout)
    expected = schema.get("columns")
    if expected is not None and columns != list(expected):
        order = " (the same columns in another order)" if sorted(columns) == sorted(expected) else ""
        raise ValueError(
            f"observations={tuple(columns)!r} is not allowed for this model{order}; expected the columns it was "
            f"trained on, {tuple(expected)!r} (build the env with the same observations=, in the same order)"
        )
    if config is None:
        return
    for name in fields:
        if name not in schema or not hasattr(config, name):
            continue
        have, want = _plain(getattr(config, name)), schema[name]
        if have != want:
            raise ValueError(
                f"{name}={have!r} is not allowed for this model; expected {want!r}, {_HINTS[name]} in the env it "
                f"was trained on (build the env with {name}={want!r}, or use a model trained with {name}={have!r})"
            )


def describe(schema: Mapping[str, Any]) -> str:
    """One line: the schema's action map, prior and columns (for a plan or a warning)."""
    parts = [f"{name}={schema[name]!r}" for name in AGREEMENT if name in schema]
    parts.append(f"prior={schema.get('prior', 'none')!r}")
    parts.append(f"{len(schema.get('columns', ()))} columns")
    if not schema.get("schema_version"):
        parts.append("legacy: columns and action scale only")
    return ", ".join(parts)


CONDITIONS: tuple[str, ...] = ("target_density", "budget", "dataset")
"""Recorded training conditions that :func:`outside_training` compares (besides the layer kinds)."""


def required_settings(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The settings an env or a pruning driver needs for the model's actions to mean what they meant in training.

    The recorded action settings (:data:`AGREEMENT`) and the statistic families it observed (``observations``:
    its columns depend on them); a legacy schema gives its action scale only.
    """
    settings = {name: schema[name] for name in AGREEMENT if name in schema}
    observations = schema.get("env", {}).get("observations")
    if observations is not None:
        settings["observations"] = tuple(observations)
    return settings


def _layer_kinds(target: Any) -> set[str] | None:
    """The kinds (``linear``, ``conv``) of the controlled layers of an env or a driver, or ``None`` if unknown."""
    inner = getattr(target, "unwrapped", target)
    masks = getattr(inner, "masks", None)
    layers = getattr(masks, "layers", None)
    if layers is None:
        return None
    return {getattr(getattr(layer, "info", layer), "kind", "linear") for layer in layers}


def trained_kinds(train_networks: Sequence[str]) -> set[str]:
    """The layer kinds of the named training networks (``cnn...`` names have conv layers, every one a Linear)."""
    kinds = {"linear"} if train_networks else set()
    if any(name.startswith("cnn") for name in train_networks):
        kinds.add("conv")
    return kinds


def outside_training(schema: Mapping[str, Any], target: Any) -> list[str]:
    """How ``target`` (an env or a pruning driver) differs from the conditions ``schema`` trained under.

    Each difference is one sentence: another target density, budget or dataset (where both are known), or layer
    kinds the training networks never had (conv layers for a policy trained on MLPs). Empty when none differs or
    nothing was recorded. These are allowed (a policy is meant to transfer) but worth a warning.
    """
    recorded = schema.get("env") or {}
    _, config = env_side(target)
    out = outside_ranges(schema.get("ranges"), config, target)
    for name in CONDITIONS:
        if name == "target_density" and schema.get("ranges"):
            continue  # a run across targets: outside_ranges compares the target with the range it trained on
        if name in recorded and config is not None and hasattr(config, name):
            have, want = _plain(getattr(config, name)), recorded[name]
            if have != want:
                out.append(f"{name}={have!r} here; it was trained with {name}={want!r}")
    kinds, known = _layer_kinds(target), trained_kinds(schema.get("train_networks") or ())
    if kinds and known and not kinds <= known:
        new = ", ".join(sorted(kinds - known))
        out.append(f"this network has {new} layers; it was trained on {', '.join(schema['train_networks'])} only")
    return out


def outside_ranges(ranges: Mapping[str, Any] | None, config: Any, target: Any) -> list[str]:
    """A sentence per recorded range (:func:`model_schema`'s ``ranges``) that ``target`` falls outside of.

    The target density outside [lowest, highest] training target, and a layer count outside the training depths.
    """
    if not ranges:
        return []
    out = []
    targets, density = ranges.get("targets") or [], getattr(config, "target_density", None)
    if targets and density is not None and not min(targets) <= density <= max(targets):
        out.append(
            f"target_density={density!r} here; it was trained across target densities {min(targets)!r} to "
            f"{max(targets)!r} ({', '.join(map(repr, targets))})"
        )
    depths, layers = ranges.get("depths"), _layer_count(target)
    if depths and layers is not None and not depths[0] <= layers <= depths[1]:
        out.append(f"this network has {layers} layers; it was trained on networks of {depths[0]} to {depths[1]}")
    return out


def _layer_count(target: Any) -> int | None:
    """The number of controlled layers of an env or a driver, or ``None`` if unknown."""
    names = getattr(getattr(target, "unwrapped", target), "layer_names", None)
    return None if names is None else len(names)


class OutsideTrainingWarning(UserWarning):
    """A policy acts under conditions other than the ones it was trained for (it runs; the warning names them)."""


class UncheckedPolicyWarning(UserWarning):
    """A policy acts on observations that no env was checked against (see ``LayerwiseAgent.bind``)."""


def warn_unchecked(owner: Any, what: str, fix: str, stacklevel: int = 3) -> None:
    """Warn once per ``owner`` (a policy or an agent with a ``checked`` flag) that it acts unchecked.

    ``stacklevel``: frames from here to the user's call (3: the user called the caller of this function).
    """
    if getattr(owner, "checked", False) or getattr(owner, "unchecked_warned", False):
        return
    owner.unchecked_warned = True
    warnings.warn(
        f"{what}: the observation's columns and the action map were not compared with the ones this model was "
        f"trained on; call {fix} to check them",
        UncheckedPolicyWarning,
        stacklevel=stacklevel,
    )


def check_keywords(
    schema: Mapping[str, Any],
    feature_names: Sequence[str],
    action_scale: str,
    density_range: tuple[float, float],
    prior: str,
) -> None:
    """``ValueError`` when a recorded schema contradicts the keywords a policy acts with."""
    own = {
        "columns": [c for c in feature_names if c != "valid"] if feature_names else schema.get("columns"),
        "action_scale": action_scale,
        "min_density": density_range[0],
        "max_density": density_range[1],
        "prior": prior,
    }
    for name, value in own.items():
        if name in schema and schema[name] != _plain(value):
            raise ValueError(
                f"schema[{name!r}]={schema[name]!r} is not allowed with the policy's {name}={value!r}; expected the "
                "schema of the env the policy acts on (agents.ppo.schema.model_schema)"
            )


def pad_for_model(model: Any, env: Any) -> Any:
    """``env`` padded to the rows of ``model``'s policy (``PadLayers``), after checking it against the schema.

    What a bare ``PPO.predict`` needs: ``PadLayers(env, max_layers)`` with the model's ``max_layers``, once the
    env's columns and action settings are the model's (:func:`check_agreement`); the policy then counts as
    checked (no :class:`UncheckedPolicyWarning`).

    Raises:
        ValueError: A mismatch (one line naming both), or a model without a layer-wise policy.

    """
    from sparsity_gym.env.wrappers import PadLayers

    policy = getattr(model, "policy", model)
    schema = getattr(policy, "schema", None)
    shape = getattr(getattr(policy, "observation_space", None), "shape", None)
    if not isinstance(schema, Mapping) or shape is None or len(shape) != 2:
        raise ValueError(
            f"model has policy {type(policy).__name__}; expected agents.ppo.layerwise_policy.LayerwisePolicy"
        )
    check_agreement(schema, env)
    policy.checked = True
    return PadLayers(env, int(shape[0]))
