"""drn-bench's tables: one markdown section per model and size, the report around them, and the JSON."""
from __future__ import annotations

import shlex

import numpy as np

from drn_perception.bench.paths import EVAL_SEED0, PATHS, PathResult
from drn_perception.bench.stats import paired_speedup, summarise


# ----------------------------------------------------------------------------- reporting


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}" if seconds >= 0.1 else f"{seconds * 1e3:.1f}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def section_markdown(sec: dict) -> str:
    h, w = sec["size"]
    res: dict[str, PathResult] = sec["results"]
    ref = res[sec["reference"]]
    onnx_note = ""
    if any(PATHS[n].backend == "onnxruntime" for n in res):
        onnx_note = ("; ONNX graphs labels-only" if sec.get("labels_only") else
                     "; ONNX Runtime runs the graph pruned to its labels output (no confidence asked)")
    lines = [f"### {sec['model']} — {h}x{w}, batch {sec['batch']}{onnx_note}", ""]
    lines.append("| path | precision | median ms | p10–p90 ms | min–max ms | frames/s | speed-up vs "
                 f"{ref.name} (paired) | labels = {ref.name} | mIoU (Δ) | added MiB |")
    lines.append("|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|")
    ref_miou = ref.miou
    for r in res.values():
        spec = PATHS[r.name]
        if r.error:
            lines.append(f"| {r.name} | {spec.precision} | not run: {r.error} | | | | | | | |")
            continue
        if r.times:
            s = summarise(r.times)
            timing = [_ms(s["median"]), f"{_ms(s['p10'])}–{_ms(s['p90'])}", f"{_ms(s['min'])}–{_ms(s['max'])}",
                      f"{sec['batch'] / s['median']:.2f}", f"{paired_speedup(ref.times, r.times):.2f}x"]
        else:
            timing = ["—"] * 5
        if r.miou is None:
            miou_txt = "—"
        else:
            miou_txt = f"{100 * r.miou:.1f}" + ("" if r is ref else f" ({100 * (r.miou - ref_miou):+.1f})")
        lines.append(f"| {r.name} | {r.precision or spec.precision} | " + " | ".join(timing)
                     + f" | {_pct(r.agreement)} | {miou_txt} | {r.added_mib:.0f} |")
    if sec["noise_agreement"] is not None:
        lines.append(f"| ({ref.name}, input ±1 grey level) | {PATHS[ref.name].precision} | | | | | | "
                     f"{_pct(sec['noise_agreement'])} | | |")
    lines.append("")
    if sec["scenes"]:
        lines.append(f"Labels compared on {sec['scenes']} generated scenes (seeds {EVAL_SEED0}+, the synthetic "
                     f"test split) at {h}x{w}" + (
                         "; random weights: tiny argmax margins, so agreement understates a trained model's "
                         "(see the ±1 grey level row)." if sec["random"] else
                         "; mIoU over the synthetic classes against the scenes' exact labels."))
    cams = [r for r in res.values() if r.seq_times]
    if cams:
        n = sec.get("cameras", 0)
        lines += ["", f"Several cameras ({n} frames pending): {n} sequential calls vs one call with a batch of {n}:",
                  "", "| path | sequential ms | batched ms | batched throughput gain |", "|:--|--:|--:|--:|"]
        for r in cams:
            seq, bat = np.median(r.seq_times), np.median(r.batch_times)
            gain = paired_speedup(r.seq_times, r.batch_times)
            lines.append(f"| {r.name} | {_ms(seq)} | {_ms(bat)} | {gain:.2f}x |")
    if sec.get("replay"):
        rep = sec["replay"]
        runs = {} if isinstance(rep.get("error"), str) else rep
        in_flight = next((r["in_flight"] for r in runs.values() if r.get("in_flight")), None)
        mode = "--as-fast-as-node" + (f" --in-flight {in_flight}: the next frame goes out when fewer than "
                                      f"{in_flight} are unanswered and the node is working on the one that is"
                                      if in_flight else "")
        lines += ["", f"Node path: bag -> DDS -> seg_node -> DDS -> recorder (drn-replay {mode}; one running "
                  "node per path, warmed up by an untimed pass) vs "
                  "the same backend called directly on the same frames in this process, in rounds "
                  "(direct, node, direct, ...; ratio per round against the direct passes either side; "
                  "masks recorded, not scored):", "",
                  "| path | node masks/s | direct frames/s | node/direct (median, min–max) | rounds "
                  "| latency p50 ms (node) | node's inference p50 ms | node's own work p50/p95 ms | dropped |",
                  "|:--|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for name, r in (runs or {"all": rep}).items():
            if "error" in r:
                lines.append(f"| {name} | not run: {r['error']} | | | | | | | |")
                continue
            rounds = r["rounds"]
            ratios, p50 = rounds["ratios"], (r.get("latency_ms") or {}).get("p50")
            diag = (r.get("node") or {}).get("diagnostics") or {}
            own = "/".join(diag.get(f"overhead_p{q}_ms", "—") for q in (50, 95))
            cells = [f"{np.median(rounds['node_fps']):.2f}", f"{np.median(rounds['direct_fps']):.2f}",
                     f"{np.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})", str(len(ratios)),
                     f"{p50:.1f}" if p50 is not None else "—", str(diag.get("inference_p50_ms", "—")), own,
                     str(r.get("dropped", "—"))]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for note in sec["notes"]:
        lines.append(f"\n{note}.")
    return "\n".join(lines) + "\n"


def report_markdown(sections: list[dict], info: dict, argv: list[str], threads: int, load_before: str,
                    load_after: str, busy: list[str]) -> str:
    v = info["versions"]
    lines = [f"# drn-bench {info['date']}", "",
             f"- command: `drn-bench {shlex.join(argv)}`",
             f"- machine: {info['cpu']}, {info['cores']} usable cores, {threads} threads; "
             f"ISA: {', '.join(info['isa']) or 'n/a'}; {info['os']}",
             "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
             f"- load average (1/5/15 min): {load_before} before, {load_after} after",
             "- other busy processes at start: " + ("; ".join(f"`{b}`" for b in busy) if busy else "none"),
             "- paths: " + "; ".join(f"{n}: {PATHS[n].about}" for n in dict.fromkeys(
                 n for s in sections for n in s["results"])),
             ""]
    for sec in sections:
        lines.append(section_markdown(sec))
    return "\n".join(lines)


def sections_json(sections: list[dict]) -> list[dict]:
    out = []
    for sec in sections:
        d = {k: v for k, v in sec.items() if k != "results"}
        d["results"] = {}
        for name, r in sec["results"].items():
            item = {k: getattr(r, k) for k in ("describe", "precision", "load_s", "added_mib", "agreement", "miou", "error")}
            item["times_s"] = r.times
            if r.times:
                item["summary"] = summarise(r.times)
            if r.seq_times:
                item["cameras_sequential_s"], item["cameras_batched_s"] = r.seq_times, r.batch_times
            d["results"][name] = item
        out.append(d)
    return out

