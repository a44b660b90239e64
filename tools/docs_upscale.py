"""docs/RESULTS.md's and README.md's ×2 super-resolution (upscale2x) parts, from the
``upscale`` section of results.json (tools/upscale_results.py); tools/render_docs.py calls
:func:`markdown` and :func:`readme_block`."""

from __future__ import annotations


def _cell(metric: str, value: float) -> str:
    return f"{value:.5f}" if metric.startswith("ewarp") else f"{value:.3f}"


def _value(target: str, value: float) -> str:
    return f"{value:.2f}×" if "×" in target else f"{value:+.3f} dB"


UPSCALE_HEADING = "×2 super-resolution (upscale2x)"
UPSCALE_ANCHOR = "2-super-resolution-upscale2x"  # GitHub's anchor of UPSCALE_HEADING
UPSCALE_COLUMNS = ("psnr", "ssim", "ewarp", "tof")


def upscale_clips(section: dict) -> list[str]:
    """The measured clips, real clips first (tools/upscale_results.py's groups)."""
    return section["groups"]["real clips"] + section["groups"]["photo moves"]


def upscale_cases(section: dict) -> list[str]:
    """The input cases (``clean`` and the x264 one), as measured."""
    return list(section[upscale_clips(section)[0]])


def upscale_targets(section: dict) -> list[tuple[str, str, float, bool]]:
    """The upscale2x targets: ``(case, target, value, met)``; PSNR differences in dB."""
    real, moves = section["groups"]["real clips"], section["groups"]["photo moves"]
    x264 = next(case for case in upscale_cases(section) if case != "clean")
    mean = section["means"].get("real clips", {})

    def gap(rows: dict, over: str) -> float:
        return rows["temporal"]["psnr"] - rows[over]["psnr"]

    def at_least(case: str, target: str, value: float, bar: float) -> tuple[str, str, float, bool]:
        return case, target, value, value >= bar

    out = []
    if mean:
        out.append(at_least("mean of real clips, clean", "temporal ≥ Lanczos + 1.0 dB", gap(mean["clean"], "Lanczos"), 1.0))
    out += [at_least(f"{c}, clean", "temporal ≥ Lanczos + 0.3 dB", gap(section[c]["clean"], "Lanczos"), 0.3) for c in real]
    out += [at_least(f"{c}, clean", "temporal ≥ Lanczos − 0.1 dB", gap(section[c]["clean"], "Lanczos"), -0.1) for c in moves]
    if mean:
        out.append(at_least(f"mean of real clips, {x264}", "temporal ≥ Lanczos + 0.3 dB", gap(mean[x264], "Lanczos"), 0.3))
        out.append(at_least("mean of real clips, clean", "temporal ≥ frame-wise + 0.2 dB", gap(mean["clean"], "frame-wise"), 0.2))
    for clip in real + moves:
        t, f = section[clip]["clean"]["temporal"], section[clip]["clean"]["frame-wise"]
        out.append((f"{clip}, clean", "temporal ewarp ≤ 0.9× frame-wise", t["ewarp"] / f["ewarp"], t["ewarp"] <= 0.9 * f["ewarp"]))
        out.append((f"{clip}, clean", "temporal tOF ≤ 1.0× frame-wise", t["tof"] / f["tof"], t["tof"] <= f["tof"]))
    return out


def upscale_summary(section: dict) -> dict[str, float]:
    """Temporal's PSNR over Lanczos (dB): the real clips' mean per case and range; the photo
    moves' range; its warping error over the frame-wise model's on every clip (clean input)."""
    real, moves = section["groups"]["real clips"], section["groups"]["photo moves"]
    x264 = next(case for case in upscale_cases(section) if case != "clean")

    def gains(clips: list[str], over: str = "Lanczos") -> list[float]:
        return [section[c]["clean"]["temporal"]["psnr"] - section[c]["clean"][over]["psnr"] for c in clips]

    mean = section["means"].get("real clips")
    nan = float("nan")
    ratios = [section[c]["clean"]["temporal"]["ewarp"] / section[c]["clean"]["frame-wise"]["ewarp"] for c in real + moves]
    return {
        "x264": x264,
        "real_gain": mean["clean"]["temporal"]["psnr"] - mean["clean"]["Lanczos"]["psnr"] if mean else nan,
        "real_fw_gain": mean["clean"]["frame-wise"]["psnr"] - mean["clean"]["Lanczos"]["psnr"] if mean else nan,
        "real_x264_gain": mean[x264]["temporal"]["psnr"] - mean[x264]["Lanczos"]["psnr"] if mean else nan,
        "real_min": min(gains(real), default=nan), "real_max": max(gains(real), default=nan),
        "moves_min": min(gains(moves), default=nan), "moves_max": max(gains(moves), default=nan),
        "ewarp_min": min(ratios), "ewarp_max": max(ratios),
    }


def upscale_table(section: dict, case: str) -> list[str]:
    """One input case: every clip's methods, then the means over each group."""
    lines = ["| clip | method | psnr | Δpsnr vs Lanczos | ssim | ewarp | tof |", "|---" * 7 + "|"]
    blocks = [(f"`{c}`", section[c][case]) for c in upscale_clips(section)]
    blocks += [(f"**mean, {g}**", m[case]) for g, m in section["means"].items() if m]
    for name, rows in blocks:
        for i, (method, r) in enumerate(rows.items()):
            cells = [_cell("psnr", r["psnr"]), f"{r['psnr'] - rows['Lanczos']['psnr']:+.3f}", _cell("ssim", r["ssim"]),
                     _cell("ewarp", r["ewarp"]), _cell("tof", r["tof"])]
            lines.append(f"| {name if i == 0 else ''} | {method} | " + " | ".join(cells) + " |")
    return lines


def markdown(section: dict) -> list[str]:
    """RESULTS.md's upscale2x part (tools/upscale_results.py's section)."""
    checks = upscale_targets(section)
    s = upscale_summary(section)
    real, moves = section["groups"]["real clips"], section["groups"]["photo moves"]
    lines = [
        f"## {UPSCALE_HEADING}", "",
        "Each clip, cropped to even sizes, is the reference; its frames area-downscaled by 2 are the input, fed as",
        f"lossless PNGs (`clean`) or encoded by x264 (`{s['x264']}`, preset medium). Every method gets the same decoded",
        "frames: `bicubic` and `Lanczos` are OpenCV's ×2 interpolation, `frame-wise` and `temporal` are",
        "`python -m vid2vid_lite.run INPUT weights=upscale2x-framewise` and `weights=upscale2x` in fp32. `ewarp`",
        ("and `tof` use the reference's flow, which the models never see. Clips: "
         + ", ".join(f"`{f}`" for f in section["files"].values()) + f"; real clips: {', '.join(real) or 'none'};"),
        f"camera moves over photos: {', '.join(moves) or 'none'}.", "",
        f"On the real clips the temporal model is {s['real_gain']:+.3f} dB over Lanczos on average with clean input "
        f"({s['real_min']:+.3f} to {s['real_max']:+.3f} per clip; frame-wise {s['real_fw_gain']:+.3f}), "
        f"{s['real_x264_gain']:+.3f} dB with {s['x264']} input{moves_clause(s, '; on the photo moves')}. Its warping "
        f"error is {s['ewarp_min']:.2f}–{s['ewarp_max']:.2f}× the frame-wise model's (clean input).", "",
        f"### upscale2x targets: {sum(ok for *_, ok in checks)} of {len(checks)} met", "",
        "| case | target | value | |", "|---|---|---|---|",
        *[f"| {case} | {target} | {_value(target, v)} | {'met' if ok else '**MISSED**'} |" for case, target, v, ok in checks],
        "",
    ]
    for case in upscale_cases(section):
        lines += [f"### upscale2x, {case} input", "", *upscale_table(section, case), ""]
    own = ", ".join(f"{c} {section[c]['clean']['Lanczos']['ewarp_ref']:.5f}" for c in upscale_clips(section))
    lines += [f"The references' own warping error (`ewarp_ref`): {own}.", ""]
    if "figure" in section:
        lines += [f"![{figure_caption(section['figure'])}](images/{section['figure']['path']})", ""]
    return lines


def moves_clause(s: dict, words: str) -> str:
    """``words`` and the photo moves' gain over Lanczos ("" when none was measured)."""
    return "" if s["moves_min"] != s["moves_min"] else f"{words} {s['moves_min']:+.3f} to {s['moves_max']:+.3f} dB"


def figure_caption(figure: dict) -> str:
    return (f"{figure['clip']}, frame {figure['frame']}, clean input: a {figure['size']}×{figure['size']} px region "
            f"zoomed ×{figure['zoom']} (Lanczos, frame-wise, temporal, original)")


def readme_block(section: dict) -> str:
    """README's upscale2x paragraph (and picture)."""
    s = upscale_summary(section)
    checks = upscale_targets(section)
    real = section["groups"]["real clips"]
    text = (f"×2 super-resolution (`upscale2x`) of clips no training used, downscaled by 2: on the real clips "
            f"({', '.join(real)}) the temporal model gains {s['real_gain']:+.3f} dB of PSNR over Lanczos on average "
            f"({s['real_min']:+.3f} to {s['real_max']:+.3f}; the frame-wise model {s['real_fw_gain']:+.3f}), "
            f"{s['real_x264_gain']:+.3f} dB on input compressed by x264 ({s['x264']})"
            f"{moves_clause(s, '; on camera moves over photos')}. Its warping error is {s['ewarp_min']:.2f}–"
            f"{s['ewarp_max']:.2f}× the frame-wise model's; {sum(ok for *_, ok in checks)} of {len(checks)} targets "
            f"are met; every clip: [docs/RESULTS.md](docs/RESULTS.md#{UPSCALE_ANCHOR}).")
    if "figure" in section:
        text += f"\n\n![{figure_caption(section['figure'])}](docs/images/{section['figure']['path']})"
    return text




def tried_block(record: dict) -> str:
    """TRAINING.md's table of the upscale2x recipes tried, from val_upscale.json
    (``tools/results.py --set val --sections upscale --label NAME``): PSNR over Lanczos on the
    real and photo-move val clips (clean input), temporal over frame-wise, and the temporal
    model's warping error and tOF over the frame-wise model's (range over the clips)."""
    lines = ["| upscale2x recipe (val clips, clean input) | frame-wise Δpsnr vs Lanczos: real / moves "
             "| temporal: real / moves | temporal − frame-wise, real | ewarp temporal / frame-wise | tOF temporal / frame-wise |",
             "|---|---|---|---|---|---|"]
    for label, e in record.items():
        def mean(group: str, key: str) -> float:
            values = [e["clips"][c]["clean"][key] for c in e["groups"][group]]
            return sum(values) / len(values)

        rows = [e["clips"][c]["clean"] for c in e["clips"]]
        ew, tof = [r["ewarp_ratio"] for r in rows], [r["tof_ratio"] for r in rows]
        lines.append(
            f"| {label} | {mean('real clips', 'frame-wise'):+.3f} / {mean('photo moves', 'frame-wise'):+.3f} dB "
            f"| {mean('real clips', 'temporal'):+.3f} / {mean('photo moves', 'temporal'):+.3f} dB "
            f"| {mean('real clips', 'temporal') - mean('real clips', 'frame-wise'):+.3f} dB "
            f"| {min(ew):.2f}–{max(ew):.2f}× | {min(tof):.2f}–{max(tof):.2f}× |")
    return "\n".join(lines)
