"""A training run's orchestration: preflight and workload, training and its callbacks, the showcase."""
