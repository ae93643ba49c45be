"""Networks: the zoo and the seeds' vision networks, layer discovery and the traced data-flow graph.

Importing the package registers every builder explicitly: the zoo's own (``mlp``, ``cnn``) and the vision
networks (:mod:`sparsity_gym.models.vision_networks`).
"""

from __future__ import annotations

from sparsity_gym.models import vision_networks as vision
from sparsity_gym.models import zoo
from sparsity_gym.models.layers import LayerInfo, find_prunable_layers
from sparsity_gym.models.zoo import NETWORKS, available_networks, build_network, register_network

__all__ = [
    "NETWORKS",
    "LayerInfo",
    "available_networks",
    "build_network",
    "find_prunable_layers",
    "register_network",
    "vision",
    "zoo",
]
