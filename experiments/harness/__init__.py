"""The experiment runner behind ``run_experiment.py``: config, cells, server processes, results."""
