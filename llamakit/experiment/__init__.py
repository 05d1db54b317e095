"""Experiments: prompt variants x dataset rows x params x repeats as cells (prompt templates,
datasets, spec files), the runner that sends them (budget, resume, replay, the v2 journal),
``Experiment.estimate``, and ``Run`` with its pandas tables and credit spend, its run file
(``runfile``) and its HTML report (``report``, figures drawn with matplotlib directly: plots sit
above this layer).

Layer: client -> **runner** -> store. It may import errors, _defaults, tokens, templating, the
client, the store and scoring; never plots, widgets or the CLI, which sit above it.
"""
