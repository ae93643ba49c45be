"""A training run's settings (TrainConfig, presets) and the rules of its run folder."""
