"""RESULTS.md's deflicker section and README's deflicker sentence from results.json's
``deflicker`` section (tools/deflicker_results.py); tools/render_docs.py writes them."""

from __future__ import annotations

#: the steadier setting's row (tools/deflicker_results.py's MODEL_ROWS); the targets score "deflicker"
STEADY = "deflicker, stability=2"
ROW_ORDER = ("stable version", "classical (FFmpeg deflicker)", "deflicker", STEADY)


EWARP_TARGETS = ("ewarp ≤ 0.5× the processed video's", "ewarp ≤ 1.3× the original video's")
LOOK_TARGET = "PSNR ≥ the stable version's − 1 dB"


def targets(section: dict, row: str = "deflicker") -> list[tuple[str, str, float, bool]]:
    """The deflicker targets on every case that has ``row``: ``(case, target, value, met)``."""
    out = []
    for clip, cases in section.items():
        for case, c in cases.items():
            if row not in c["rows"]:
                continue
            tag, d = f"{clip}, {case}", c["rows"][row]
            if c["constant"]:
                out.append((tag, "PSNR to the processed frames ≥ 35 dB (no flicker)", d["psnr"], d["psnr"] >= 35.0))
                continue
            ratio = d["ewarp"] / c["ewarp_processed"]
            out.append((tag, EWARP_TARGETS[0], ratio, ratio <= 0.5))
            ratio = d["ewarp"] / c["ewarp_original"]
            out.append((tag, EWARP_TARGETS[1], ratio, ratio <= 1.3))
            if "stable version" in c["rows"]:
                gap = d["psnr"] - c["rows"]["stable version"]["psnr"]
                out.append((tag, LOOK_TARGET, gap, gap >= -1.0))
    return out


def ewarp_targets_met(section: dict) -> dict[str, int]:
    """The ewarp targets of the flickering cases that have a stable version, scored for the
    stable version itself (the ideal output) and for the model: ``{"cases", "ideal", "model"}``."""
    def met(row: str) -> dict[tuple[str, str], bool]:
        return {(case, target): ok for case, target, _, ok in targets(section, row) if target in EWARP_TARGETS}
    ideal, model = met("stable version"), met("deflicker")
    return {"cases": len(ideal), "ideal": sum(ideal.values()), "model": sum(model[k] for k in ideal)}


def has_row(section: dict, row: str) -> bool:
    """Whether every case has ``row`` (results.json files older than the row lack it)."""
    return all(row in c["rows"] for cases in section.values() for c in cases.values())


def summary(section: dict, row: str = "deflicker") -> dict:
    flickering = [c for cases in section.values() for c in cases.values() if not c["constant"]]
    ratios = [c["rows"][row]["ewarp"] / c["ewarp_processed"] for c in flickering]
    gaps = [c["rows"][row]["psnr"] - c["rows"]["stable version"]["psnr"]
            for c in flickering if "stable version" in c["rows"]]
    constant = [c["rows"][row]["psnr"] for cases in section.values() for c in cases.values() if c["constant"]]
    # how stable the ideal output itself is: the bar the ewarp targets set, seen from the ideal
    ideal = [(c["rows"]["stable version"]["ewarp"] / c["ewarp_processed"], c["rows"]["stable version"]["ewarp"] / c["ewarp_original"])
             for c in flickering if "stable version" in c["rows"]]
    return {"cases": len(flickering), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "gap_min": min(gaps), "gap_max": max(gaps), "constant_min": min(constant) if constant else float("nan"),
            "ideal_processed_min": min(r for r, _ in ideal), "ideal_processed_max": max(r for r, _ in ideal),
            "ideal_original_min": min(r for _, r in ideal), "ideal_original_max": max(r for _, r in ideal),
            # cases without a stable version (the colorize model): how much the processed video flickers at all
            "unpaired_processed_over_original": [c["ewarp_processed"] / c["ewarp_original"] for c in flickering
                                                 if "stable version" not in c["rows"]]}


def _value(target: str, value: float) -> str:
    return f"{value:.2f}×" if "×" in target else f"{value:+.2f} dB" if "−" in target else f"{value:.2f} dB"


def _met(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def _ideal(scored: tuple[float, bool] | None, target: str) -> str:
    """The stable version's value and verdict on a warping-error target ("—" elsewhere)."""
    return "—" if scored is None else f"{_value(target, scored[0])} {'met' if scored[1] else 'missed'}"


def markdown(section: dict) -> list[str]:
    checks = targets(section)
    ideal = {(case, target): (v, ok) for case, target, v, ok in targets(section, "stable version") if target in EWARP_TARGETS}
    met = sum(ok for *_, ok in checks)
    s, e = summary(section), ewarp_targets_met(section)
    lines = [
        "## deflicker", "",
        "Each held-out clip (the original) put through a per-frame process that no training used — gray-world",
        "white balance and luma histogram equalisation with each frame's own parameters, OpenCV's stylization",
        "filter at a random strength each frame, the bundled frame-wise colorize model — and stabilised with",
        "`python -m vid2vid_lite.run PROCESSED guide=ORIGINAL weights=deflicker`. Each row is measured against the",
        "processed frames (PSNR, SSIM) and by its warping error with the original video's flow. `stable version`",
        "is the same process at the clip's mean parameters (the ideal output; none for the colorize model);",
        "`classical` is FFmpeg's `deflicker` filter (brightness only); `stylize, constant strength` has no flicker",
        "at all.", "",
        f"Over the {s['cases']} flickering cases the output's warping error is {s['ratio_min']:.2f}–{s['ratio_max']:.2f}× "
        f"the processed video's, and its PSNR to the processed frames {s['gap_min']:+.2f} to {s['gap_max']:+.2f} dB from "
        f"the stable version's. The stable version itself, the ideal output, has "
        f"{s['ideal_processed_min']:.2f}–{s['ideal_processed_max']:.2f}× the processed video's warping error and "
        f"{s['ideal_original_min']:.2f}–{s['ideal_original_max']:.2f}× the original's (per case: the `stable version` "
        f"rows below). Scored the same way, the stable version meets {e['ideal']} of the {e['cases']} warping-error "
        f"targets of the cases that have one, and the model {e['model']}.{unpaired_sentence(s)}", "",
        *steady_lines(section),
        f"### deflicker targets: {met} of {len(checks)} met", "",
        "The last column scores the stable version, the ideal output, on the same warping-error target.", "",
        "| case | target | value | | stable version |", "|---|---|---|---|---|",
        *[f"| {case} | {target} | {_value(target, v)} | {_met(ok)} | {_ideal(ideal.get((case, target)), target)} |"
          for case, target, v, ok in checks],
        "",
    ]
    for clip, cases in section.items():
        for case, c in cases.items():
            lines += [f"### {clip}, {case}", "",
                      f"ewarp of the processed video {c['ewarp_processed']:.5f}, of the original {c['ewarp_original']:.5f}.", "",
                      "| | psnr to processed | ssim | ewarp | ewarp / processed's |", "|---|---|---|---|---|"]
            for label in [r for r in ROW_ORDER if r in c["rows"]]:
                r = c["rows"][label]
                lines.append(f"| {label} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['ewarp']:.5f} | "
                             f"{r['ewarp'] / c['ewarp_processed']:.2f} |")
            lines.append("")
    return lines


def unpaired_sentence(s: dict) -> str:
    """How much the processed videos without a stable version (the colorize model) flicker."""
    ratios = s["unpaired_processed_over_original"]
    if not ratios:
        return ""
    return (f" In the cases without a stable version (the colorize model) the processed video's warping error is "
            f"{min(ratios):.2f}–{max(ratios):.2f}× the original's, so ewarp ≤ 0.5× the processed video's asks for "
            f"{min(ratios) / 2:.2f}–{max(ratios) / 2:.2f}× the original's own.")


def steady_lines(section: dict) -> list[str]:
    """RESULTS.md's paragraph on ``stability=2`` (none for a file without its row)."""
    if not has_row(section, STEADY):
        return []
    s, checks = summary(section, STEADY), targets(section, STEADY)
    return [f"With `stability=2` (`run`'s steadier setting; the default, 1, was chosen on the validation clips) the "
            f"warping error is {s['ratio_min']:.2f}–{s['ratio_max']:.2f}× the processed video's and the PSNR "
            f"{s['gap_min']:+.2f} to {s['gap_max']:+.2f} dB from the stable version's; on the process without flicker "
            f"{s['constant_min']:.2f} dB or closer. Scored the same way it meets {sum(ok for *_, ok in checks)} of "
            f"{len(checks)} targets (the table scores the default).", ""]


def readme_block(section: dict) -> str:
    s = summary(section)
    checks = targets(section)
    text = (f"On {s['cases']} processed versions of held-out clips (four per-frame processes no training used), the "
            f"bundled model brings the warping error to {s['ratio_min']:.2f}–{s['ratio_max']:.2f}× the processed video's, "
            f"at {s['gap_min']:+.2f} to {s['gap_max']:+.2f} dB of PSNR from the ideal stable version; on a process "
            f"without flicker it stays {s['constant_min']:.1f} dB or closer to the input. {sum(ok for *_, ok in checks)} "
            f"of {len(checks)} targets are met; every case: [docs/RESULTS.md](docs/RESULTS.md#deflicker).")
    if has_row(section, STEADY):
        t = summary(section, STEADY)
        text += (f" With `stability=2` the warping error is {t['ratio_min']:.2f}–{t['ratio_max']:.2f}× the processed "
                 f"video's, at {t['gap_min']:+.2f} to {t['gap_max']:+.2f} dB from the stable version.")
    return text
