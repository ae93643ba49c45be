"""Agents that learn pruning schedules: PPO on the schedule env, its callbacks, training and evaluation."""
