"""The Jinja sandbox that prompt templates and judge rubrics render in."""
