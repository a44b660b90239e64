"""Issue 15's deflicker targets of several results.json files side by side: how a deflicker
candidate is chosen on the val clips (tools/train_bundled.py's recipe comment).

    python tools/results.py --set val --sections deflicker --model deflicker=RUN --json A.json
    python tools/compare_deflicker.py A.json B.json [...]

Prints, per file ([1], [2], ...), how many targets are met, then one row per case and target
with each file's value (``*``: met).  One run's count moves by about one target from seed to
seed, so compare candidates over several seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docs_deflicker import targets  # noqa: E402


def table(sections: dict[str, dict]) -> list[str]:
    """name -> a results.json's ``deflicker`` section  ->  the lines to print."""
    scored = {name: targets(section) for name, section in sections.items()}
    keys = [[(case, target) for case, target, _, _ in rows] for rows in scored.values()]
    if any(k != keys[0] for k in keys):
        raise SystemExit("error: the files measure different clips or cases: compare runs of one --set")
    lines = [f"[{i}] {name}: {sum(ok for *_, ok in rows)} of {len(rows)} targets met"
             for i, (name, rows) in enumerate(scored.items(), 1)]
    width = max(len(f"{c} | {t}") for c, t in keys[0])
    lines.append(f"{'case | target':{width}}  " + "  ".join(f"{f'[{i}]':>12}" for i in range(1, len(scored) + 1)))
    for i, (case, target) in enumerate(keys[0]):
        values = "  ".join(f"{rows[i][2]:11.2f}{'*' if rows[i][3] else ' '}" for rows in scored.values())
        lines.append(f"{f'{case} | {target}':{width}}  {values}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json files with a deflicker section")
    args = parser.parse_args(argv)
    sections = {}
    for path in args.results:
        name = path.stem if path.stem not in sections else str(path)
        try:
            sections[name] = json.loads(path.read_text())["sections"]["deflicker"]
        except (OSError, ValueError, KeyError) as err:
            raise SystemExit(f"error: {path}: no deflicker section ({err}); write one with "
                             "tools/results.py --sections deflicker --json FILE") from None
    print("\n".join(table(sections)))


if __name__ == "__main__":
    main()
