"""What a training run measures and reports: the comparison, costs, opponents, held-out evaluation, tuning."""
