"""Sum a py-spy raw profile by where its samples' time went: per library of the innermost frame,
for the samples under a given frame (default: llamakit's transport), and per innermost llamakit
module for all samples. How the HTTP layer's share of a run was found (benchmarks/README.md).

    py-spy record --gil -r 250 -f raw -o /tmp/run.txt -- .venv/bin/python \\
        benchmarks/runner_throughput.py --only runner --rounds 1
    .venv/bin/python benchmarks/_py_spy_by_library.py /tmp/run.txt [frame substring]
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path


def library(frame: str) -> str:
    match = re.search(r"\((\S+?\.py)", frame)
    path = match.group(1) if match else frame
    path = re.sub(r".*site-packages/", "", path)
    path = re.sub(r".*/lib/python3\.\d+/", "stdlib/", path)
    return path.split("/")[0] if "/" in path else path


def main() -> None:
    path = sys.argv[1]
    under = sys.argv[2] if len(sys.argv) > 2 else "llamakit/client/transport"
    total = inside = 0
    by_library: collections.Counter[str] = collections.Counter()
    by_module: collections.Counter[str] = collections.Counter()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        stack, count = line.rsplit(" ", 1)
        n = int(count)
        frames = stack.split(";")
        total += n
        owner = next((m.group(1) for f in reversed(frames)
                      if (m := re.search(r"(llamakit/[\w/]+)\.py", f))), "outside llamakit")  # fmt: skip
        by_module[owner] += n
        if any(under in f for f in frames):
            inside += n
            by_library[library(frames[-1])] += n
    print(f"{total} samples; {inside} ({inside / max(total, 1):.0%}) under {under!r}")
    print("by library of the innermost frame, under it:")
    for name, n in by_library.most_common(15):
        print(f"  {n / max(total, 1):6.1%}  {name}")
    print("by innermost llamakit module, all samples:")
    for name, n in by_module.most_common(15):
        print(f"  {n / max(total, 1):6.1%}  {name}")


if __name__ == "__main__":
    main()
