"""The one Jinja sandbox that prompt templates (``llamakit.experiment.templates``) and judge
rubrics render in: immutable, strict about undefined variables, bounded in the text it produces.

Layer: below the client, scoring and experiments, which all may use it. It may import only
``llamakit.errors`` and ``llamakit._defaults``.
"""
