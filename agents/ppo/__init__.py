"""The PPO agent: its policy, the agent on raw observations, its schema, the prior, paired rewards, Ray envs."""
