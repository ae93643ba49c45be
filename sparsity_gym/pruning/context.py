"""What a fixed policy reads of the run it acts in: :class:`PruningContext`.

Both :class:`sparsity_gym.pruning.Pruner` and :class:`sparsity_gym.env.SparsityEnv` (whose episode is a Pruner)
offer it, so a policy built on either acts the same way (``baselines.fixed_policies.pruning_context``).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.observation.features import ObservationLayout


class PruningContext(Protocol):
    """The read-only surface a policy binds to.

    ``config`` holds the pruning fields (``min_density``, ``max_density``, ``action_scale``, ``action_mode``,
    ``allocation``, ``observations``, ...): a :class:`~sparsity_gym.pruning.pruning_config.PruningConfig` or the env's
    :class:`~sparsity_gym.env.env_config.EnvConfig`, which has the same fields.
    """

    @property
    def config(self) -> Any:
        """The pruning fields."""
        ...

    @property
    def layout(self) -> ObservationLayout:
        """The observation's columns (``layout.columns``: name to index)."""
        ...

    @property
    def masks(self) -> MaskedNetwork:
        """The masks (``masks.layers``: the controlled layers, their widths)."""
        ...

    @property
    def layer_names(self) -> tuple[str, ...]:
        """The controlled layers' names, in action order."""
        ...

    @property
    def num_classes(self) -> int:
        """Classes of the task."""
        ...

    def density_to_action(self, density: float | np.ndarray) -> np.ndarray:
        """The action that asks for ``density``."""
        ...

    def threshold_to_action(self, threshold: float | np.ndarray) -> np.ndarray:
        """The action that asks for ``threshold``."""
        ...
