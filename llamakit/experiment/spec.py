"""Experiment spec files: the same Experiment, written in YAML, for ``llamakit run SPEC.yaml``.

```yaml
name: capitals
dataset: capitals.csv            # relative to this file; or a list of rows
prompts:
  terse: "What is the capital of {{ country }}? Answer with the city only."
  chatty:
    - {role: system, content: "You are a helpful geography tutor."}
    - {role: user, content: "Which city is the capital of {{ country }}?"}
  step_by_step:                  # a variant with sampling params of its own, merged over params
    messages: "Think it through, then name the capital of {{ country }}."
    params: {max_tokens: 256}
params: {max_tokens: 32, temperature: [0.0, 0.7]}
repeats: 2
scorers: [contains, {exact: {ignore_case: true}}, {judge: {rubric: "Names {{ expected }}?"}}]
concurrency: 8                   # defaults for `llamakit run`; flags override them
budget: 0.05
missing: error                   # or `empty`: a blank cell a template reads renders as ""
stop: {compare: {a: terse, b: chatty, metric: contains}}   # optional: stop when answered
```

Unknown keys are errors (a typo like ``repeat:`` must not silently run once).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ValidationError

SPEC_KEYS = (
    "name",
    "dataset",
    "prompts",
    "params",
    "repeats",
    "scorers",
    "model",
    "models",
    "concurrency",
    "budget",
    "missing",
    "stop",
)
REQUIRED = ("name", "dataset", "prompts")
SCORER_NAMES = (
    "exact",
    "contains",
    "regex",
    "is_json",
    "json_field",
    "length_between",
    "numeric_close",
    "judge",
)


def _unknown(kind: str, key: str, allowed: tuple[str, ...], where: str) -> ValidationError:
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValidationError(
        f"{where}: unknown {kind} {key!r}{hint}; allowed: {', '.join(allowed)}", field=str(key)
    )


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    dataset: Any
    prompts: Any
    params: Any = None
    repeats: int = 1
    scorers: list[Any] = field(default_factory=list)
    model: str | None = None
    models: list[str] | None = None
    concurrency: int | None = None
    budget: Any = None
    missing: Any = "error"
    stop: Any = None  # a stop rule (experiment.stop.parse_stop): compare/best

    def build_scorers(self) -> list[Any]:
        from .. import scoring

        out = []
        for i, entry in enumerate(self.scorers):
            where = f"{self.path.name}: scorers[{i}]"
            kwargs: Any  # checked below: YAML may give anything here
            if isinstance(entry, str):
                name, kwargs = entry, {}
            elif isinstance(entry, Mapping) and len(entry) == 1:
                name, kwargs = next(iter(entry.items()))
                kwargs = {} if kwargs is None else kwargs
            else:
                raise ValidationError(
                    f"{where} must be a scorer name or {{name: {{options}}}}", field=f"scorers[{i}]"
                )
            if name not in SCORER_NAMES:
                raise _unknown("scorer", name, SCORER_NAMES, where)
            if not isinstance(kwargs, Mapping):
                raise ValidationError(
                    f"{where}: options of {name!r} must be a mapping", field=f"scorers[{i}]"
                )
            factory = getattr(scoring, name)
            try:
                if name == "judge":  # client None: the judge grades with the run's client
                    out.append(factory(None, **kwargs))
                else:
                    out.append(factory(**kwargs))
            except TypeError as exc:
                raise ValidationError(
                    f"{where}: bad options for {name!r}: {exc}", field=f"scorers[{i}]"
                ) from None
            except ValidationError as exc:  # say which file and scorer, keep the fix it names
                raise ValidationError(f"{where} ({name}): {exc}", field=exc.field) from None
        return out

    def experiment(self, **subset: Any) -> Any:
        """The Experiment; a ValidationError names this spec file first. ``subset``: the
        ``limit`` / ``sample`` / ``seed`` of a pilot run (see ``Experiment``)."""
        from .experiment import Experiment

        try:
            return Experiment(
                self.name,
                prompts=self.prompts,
                dataset=self.dataset,
                params=self.params,
                repeats=self.repeats,
                scorers=self.build_scorers(),
                model=self.model,
                missing=self.missing,
                **subset,
                models=self.models,
            )
        except ValidationError as exc:
            if str(exc).startswith(self.path.name):
                raise
            raise ValidationError(f"{self.path.name}: {exc}", field=exc.field) from None


def load_spec(path: str | Path) -> Spec:
    """Read and check a spec file; raises ValidationError naming the file and the problem."""
    from ..safe_yaml import load_yaml  # imports yaml: only when a spec is read

    path = Path(path)
    if not path.exists():
        raise ValidationError(f"spec file not found: {path}", field="spec")
    if path.is_dir():
        raise ValidationError(
            f"{path} is a folder; give a spec file in it, such as data/demo.yaml", field="spec"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"cannot read spec {path}: {exc}", field="spec") from None
    data = load_yaml(text, path.name, "spec")
    if not isinstance(data, Mapping):
        raise ValidationError(
            f"{path.name} must be a YAML mapping of experiment fields", field="spec"
        )
    for key in data:
        if key not in SPEC_KEYS:
            raise _unknown("key", key, SPEC_KEYS, path.name)
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ValidationError(f"{path.name} is missing {', '.join(missing)}", field=missing[0])
    dataset = data["dataset"]
    if isinstance(dataset, str):
        dataset = (path.parent / dataset).resolve()
    scorers = data.get("scorers") or []
    if not isinstance(scorers, list):
        scorers = [scorers]
    return Spec(
        path=path,
        name=data["name"],
        dataset=dataset,
        prompts=data["prompts"],
        params=data.get("params"),
        repeats=data.get("repeats", 1),
        scorers=scorers,
        model=data.get("model"),
        models=data.get("models"),
        concurrency=data.get("concurrency"),
        budget=data.get("budget"),
        missing=data.get("missing", "error"),
        stop=data.get("stop"),
    )
