"""The deflicker targets of several results.json files side by side: how a deflicker
candidate is chosen on the val clips (tools/train_bundled.py's recipe comment).

    python tools/results.py --set val --sections deflicker --model deflicker=RUN --json A.json
    python tools/compare_deflicker.py A.json B.json [...]

Each model row of a file is a run of its own ([1], [2], ...: ``deflicker``, the model as
``run`` gives it by default, then rows such as ``deflicker, stability=2``).  Prints, per run,
how many targets are met and two averages over the flickering cases (:func:`averages`), then
one row per case and target with each run's value (``*``: met).  One run's count moves by
about one target from seed to seed, so compare candidates over several seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docs_deflicker import EWARP_TARGETS, LOOK_TARGET, targets  # noqa: E402


def averages(rows: list[tuple[str, str, float, bool]]) -> str:
    """Two averages beside the count: the geometric mean of the output's warping error over the
    processed video's, and the median PSNR gap to the stable version (a mean would follow its
    one or two cases at -30 dB), over the flickering cases."""
    ratios = [v for _, t, v, _ in rows if t == EWARP_TARGETS[0]]
    gaps = [v for _, t, v, _ in rows if t == LOOK_TARGET]
    ratio = float(np.exp(np.mean(np.log(ratios)))) if ratios else float("nan")
    gap = float(np.median(gaps)) if gaps else float("nan")
    return (f"ewarp {ratio:.3f}x the processed video's (geometric mean), "
            f"PSNR {gap:+.2f} dB from the stable version's (median)")


def model_rows(section: dict) -> list[str]:
    """The rows of a deflicker section that a model gave (``deflicker`` first), in its first case."""
    rows = next(iter(next(iter(section.values())).values()))["rows"]
    return sorted((r for r in rows if r.startswith("deflicker")), key=lambda r: (r != "deflicker", r))


def table(sections: dict[str, dict]) -> list[str]:
    """name -> a results.json's ``deflicker`` section  ->  the lines to print."""
    scored = {name if row == "deflicker" else f"{name} ({row.removeprefix('deflicker, ')})": targets(section, row)
              for name, section in sections.items() for row in model_rows(section)}
    keys = [[(case, target) for case, target, _, _ in rows] for rows in scored.values()]
    if any(k != keys[0] for k in keys):
        raise SystemExit("error: the files measure different clips or cases: compare runs of one --set")
    lines = [f"[{i}] {name}: {sum(ok for *_, ok in rows)} of {len(rows)} targets met; {averages(rows)}"
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
