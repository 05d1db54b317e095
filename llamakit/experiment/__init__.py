"""Experiments: cells, templates, datasets, the runner and its runs."""
