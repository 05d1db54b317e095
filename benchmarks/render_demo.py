"""How long llamakit takes to turn the demo experiment's templates into prompts.

Builds the experiment of ``data/demo.yaml`` (3 variants x 24 countries: every template is parsed,
compiled and rendered for every row, and every row checked) and, separately, re-renders its 72
prompts from the already compiled templates. Both are pure CPU work in this process: no server,
no store. Reported: the best of --repeats timings (after one warm-up; the minimum is the figure
least disturbed by other work on a shared machine), per build and per prompt.

Usage: ``python benchmarks/render_demo.py [--repeats N]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from llamakit.experiment.spec import load_spec

DEMO = Path(__file__).resolve().parent.parent / "data" / "demo.yaml"


def _best_seconds(fn: object, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    spec = load_spec(DEMO)
    experiment = spec.experiment()  # warm-up: imports, template cache
    prompts = len(experiment.templates) * len(experiment.items)

    def build() -> None:
        spec.experiment()

    def render_all() -> None:
        for template in experiment.templates:
            for item in experiment.items:
                template.render(item.row, item_id=item.id)

    build_s = _best_seconds(build, args.repeats)
    render_s = _best_seconds(render_all, args.repeats)
    note = f"best of {args.repeats}, {prompts} prompts"
    print(f"FIGURE demo experiment build: {build_s * 1e3:.2f} ms ({note})")
    print(f"FIGURE demo prompt render: {render_s / prompts * 1e6:.1f} us/prompt ({note})")


if __name__ == "__main__":
    main()
