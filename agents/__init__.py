"""Agents that learn pruning schedules: the PPO agent (ppo), a run's settings, its reports, the run itself."""
