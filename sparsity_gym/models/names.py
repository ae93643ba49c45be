"""Networks named by strings: :class:`NetworkSpec` and the sized-name parser :func:`parse_network`.

A network of a family or a task is a zoo name or a user factory plus its keyword arguments, with a readable name.
Names written ``mlp_256x128`` (hidden widths of an MLP), ``cnn_16x32`` (channels of the 2-D conv net) or
``cnn1d_32x32`` (channels of the 1-D conv net) are parsed back into specs. This module sits below the env (whose
tasks name their networks this way) and is re-exported by :mod:`sparsity_gym.experiments.families`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sparsity_gym.core.checks import check_choice

__all__ = ["NetworkSpec", "parse_network", "sized"]

_SIZED = re.compile(r"^(?P<kind>mlp|cnn1d|cnn)_(?P<sizes>\d+(?:x\d+)*)$")
_SIZE_ARGUMENT = {"mlp": "widths", "cnn": "channels", "cnn1d": "channels"}


@dataclass(frozen=True)
class NetworkSpec:
    """One network of a family: a zoo name or a factory, its keyword arguments and a readable name.

    Attributes:
        name: The name used in reports and on the command line (``mlp_256x256``, ``cnn_16x32``, a factory's
            ``__name__``).
        network: A zoo name or any callable returning an ``nn.Module`` (``EnvConfig.network``). A factory
            used with subprocess vector envs must be picklable (a module-level function).
        kwargs: ``EnvConfig.network_kwargs``.

    """

    name: str
    network: str | Callable[..., Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))

    def env_kwargs(self) -> dict[str, Any]:
        """The ``EnvConfig`` fields that select this network."""
        return {"network": self.network, "network_kwargs": dict(self.kwargs)}

    def __reduce__(self) -> tuple[Any, ...]:
        # MappingProxyType does not pickle; subprocess vector envs send specs to their workers.
        return (NetworkSpec, (self.name, self.network, dict(self.kwargs)))


def sized(kind: str, sizes: Sequence[int]) -> NetworkSpec:
    """The spec ``mlp_<w1>x<w2>...`` (hidden widths), ``cnn_<c1>x<c2>...`` or ``cnn1d_<c1>x<c2>...`` (channels)."""
    check_choice("network", kind, tuple(_SIZE_ARGUMENT))
    sizes = tuple(int(s) for s in sizes)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"network sizes={sizes!r} are not allowed; expected one or more positive integers")
    return NetworkSpec(f"{kind}_{'x'.join(map(str, sizes))}", kind, {_SIZE_ARGUMENT[kind]: sizes})


def parse_network(name: str | Callable[..., Any] | NetworkSpec) -> NetworkSpec:
    """A spec from a sized name (``mlp_256x128``, ``cnn_16x32``, ``cnn1d_32x32``), a zoo name, a factory or a spec."""
    if isinstance(name, NetworkSpec):
        return name
    if callable(name):
        return NetworkSpec(getattr(name, "__name__", type(name).__name__), name)
    match = _SIZED.match(name)
    if match:
        return sized(match["kind"], [int(s) for s in match["sizes"].split("x")])
    from sparsity_gym.models.zoo import available_networks

    if name in available_networks():
        return NetworkSpec(name, name)
    raise ValueError(
        f"networks={name!r} is not allowed; expected a zoo name {available_networks()!r} or a sized name such "
        "as 'mlp_256x128' (hidden widths), 'cnn_16x32' or 'cnn1d_32x32' (conv channels)"
    )
