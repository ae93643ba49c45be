"""The policy class's old import path, for model zips saved before it moved to the agent's package.

stable-baselines3 pickles a model's policy class by reference (module and name), so every model zip saved before
the move (the shipped policies, users' runs) names this module; it loads through this alias. New zips name the
class's own module.
"""

# Kept at this path on purpose: saved models name it. Nothing in the project imports it.
from agents.ppo.layerwise_policy import LayerwisePolicy

__all__ = ["LayerwisePolicy"]
