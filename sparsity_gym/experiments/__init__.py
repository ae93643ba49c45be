"""The harness around the env: network families, evaluation of any ``predict()``, the grid, the report."""
