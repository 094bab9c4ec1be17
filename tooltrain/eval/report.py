"""The benchmark's outputs: the text log (the spec's table and the rest), the JSON, the PNG chart."""

from __future__ import annotations

from pathlib import Path

from ..io import pyplot, save_png, write_json, write_text
from ..tools import LABELS
from .guided import RETRIES
from .scoring import INVALID


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _rate(m: dict, key: str) -> str:
    """A rate with its 95% interval: `64.6% (57.6-71.0)`."""
    value, interval = m.get(key), m.get("intervals", {}).get(key)
    if value is None or interval is None:
        return _pct(value)
    return f"{100 * value:.1f}% ({100 * interval[0]:.1f}-{100 * interval[1]:.1f})"


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _size(info: dict) -> str:
    if info.get("size_bytes") is None:
        return "-"
    return f"{info['size_bytes'] / 1e6:.1f} MB" + (" (model)" if info.get("size_of") == "model" else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return [line(header), line(["-" * w for w in widths]), *map(line, rows)]


def format_log(results: dict) -> str:
    env, settings = results.get("environment", {}), results["settings"]
    models = results["models"]
    out = [f"Tool-use decision benchmark ({env.get('when', '')})",
           f"machine: {env.get('platform', '?')}; device {env.get('device', '?')}; BLAS {env.get('blas', '?')}",
           f"decoding: {settings['decoding']}, shared system-and-tools prefix prefilled once per model (prompt cache), "
           f"stop at a complete tool call or end of turn, at most {settings['max_tokens']} tokens, "
           f"direct answers cut {settings['max_answer_tokens']} tokens after the decision",
           "accuracy = right decision; success = right decision with a working call (grep hits the asked-for line "
           "of the asked-for file, read opens the asked-for file); (low-high) = 95% Wilson interval", ""]
    for problem in results.get("problems", []):
        out.append(f"! {problem}")
    for info in models:
        if info.get("error"):
            out.append(f"! {info['name']}: not benchmarked: {info['error']}")
    for set_name, meta in results["sets"].items():
        per_model = results["results"][set_name]
        out += ["", f"== {set_name}: {meta['cases']} cases ({meta['path']}; workspace {', '.join(meta['roots'])}) ==",
                ""]
        rows = []
        for info in models:
            m = per_model.get(info["name"])
            if m is None:
                continue
            rows.append([info["name"], str(info["examples"]), _seconds(info.get("load_time_s")),
                         _seconds(m.get("avg_gen_time_s")), _rate(m, "accuracy"), _size(info)])
        out += _table(["Phase", "Examples", "Load Time", "Avg Gen Time", "Accuracy", "Adapter Size"], rows)
        out += ["", _timing_note(settings, per_model), ""]
        rows = []
        for info in models:
            m = per_model.get(info["name"])
            if m is None:
                continue
            rows.append([info["name"], str(m["cases"]), "-" if m.get("macro_f1") is None else f"{m['macro_f1']:.3f}",
                         _rate(m, "success"), _rate(m, "over_call_rate"), _pct(m.get("under_call_rate")),
                         _rate(m, "grep_hit_rate"), _rate(m, "read_valid_rate"),
                         _pct(m.get("format_adherence")), _seconds(m.get("avg_time_to_decision_s")),
                         "-" if m.get("tokens_per_second") is None else f"{m['tokens_per_second']:.0f}",
                         f"{info.get('peak_memory_gb', 0):.2f} GB", str(len(m["skipped"]))])
        out += _table(["Model", "Cases", "Macro-F1", "Success", "Over-call", "Under-call", "Grep hit",
                       "Read valid", "Format", "Decision", "Tok/s", "Peak mem", "Skipped"], rows)
        out += ["", "confusion (rows: expected; columns: decided " + " / ".join((*LABELS, INVALID)) + ")"]
        for info in models:
            m = per_model.get(info["name"])
            if m is None or not m["cases"]:
                continue
            cells = [f"{label} {'/'.join(str(m['confusion'][label].get(d, 0)) for d in (*LABELS, INVALID))}"
                     for label in LABELS if sum(m["confusion"][label].values())]
            out.append(f"  {info['name']:<18} " + "   ".join(cells))
        comparisons = results.get("comparisons", {}).get(set_name, [])
        if comparisons:
            out += ["", "each model vs the one before it on the same cases (exact McNemar test; "
                        "'only A/only B' = cases only that model got right):"]
        for c in comparisons:
            for metric in ("accuracy", "success"):
                m = c[metric]
                verdict = "a real difference (p < 0.05)" if m["p"] < 0.05 else "within noise"
                out.append(f"  {c['first']} -> {c['second']} {metric}: {_pct(m['first'])} -> {_pct(m['second'])}, "
                           f"only {c['first']} {m['only_first']} / only {c['second']} {m['only_second']}, "
                           f"p = {m['p']:.3f}: {verdict}")
        out += _guided_lines(results.get("guided", {}).get(set_name, {}), per_model, models)
    plain = [(info["name"], info["plain_vs_cached"]) for info in models if info.get("plain_vs_cached")]
    if plain:
        out += ["", "this path vs plain one-shot mlx_lm.generate on the same questions (measured side by side):"]
        for name, p in plain:
            out.append(f"  {name:<18} {p['questions']} questions: {p['plain_generate_s']:.2f} s plain vs "
                       f"{p['this_path_s']:.2f} s = {p['speedup']}x faster; same decision {p['same_decision']}/"
                       f"{p['questions']}")
    return "\n".join(out) + "\n"


def _timing_note(settings: dict, per_model: dict) -> str:
    """Which figures are single-stream latency and which are throughput."""
    batch_size = settings.get("batch_size", 1)
    sample = next((m["latency_sample"] for m in per_model.values() if m.get("latency_sample")), None)
    where = f"{sample} cases taken in turn over the labels" if sample else "every case"
    throughput = ", ".join(f"{name} {m['wall_s_per_question']:.2f}" for name, m in per_model.items()
                           if m.get("wall_s_per_question") is not None)
    return (f"Avg Gen Time, Decision and Tok/s: latency, {where} decided one at a time; throughput of the raw pass "
            f"at batch size {batch_size} (decoding and checking, s/question): {throughput or '-'}")


def _guided_lines(guided: dict, raw: dict, models: list[dict]) -> list[str]:
    """Raw vs guided (paths held to real ones) for each model on one set, and the time guidance adds."""
    names = [info["name"] for info in models if info["name"] in guided and info["name"] in raw]
    if not names or not any(guided[n]["cases"] for n in names):
        return []
    rows = []
    for name in names:
        r, g = raw[name], guided[name]
        versus, cost = g.get("vs_raw") or {}, g.get("overhead") or {}
        p = versus.get("success", {}).get("p")
        rows.append([name, f"{_rate(r, 'success')} -> {_rate(g, 'success')}", "-" if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}",
                     f"{_pct(r.get('grep_hit_rate'))} -> {_rate(g, 'grep_hit_rate')}",
                     f"{_pct(r.get('read_valid_rate'))} -> {_rate(g, 'read_valid_rate')}", str(g.get("resolved", 0)),
                     str(g["rerun"]),
                     f"{g.get('found_by_retry', 0)}/{g.get('retried', 0)}",
                     "-" if not cost.get("ratio") else f"{cost['ratio']:.2f}x ({cost['questions']} q)"])
    return ["", "raw -> guided decoding (a path that is not real resolved to the one real path it names, else the "
                f"call decoded again with its path held to real ones and a grep that finds nothing retried up to {RETRIES} "
                "times at its least certain tokens; cases whose path is real and whose grep finds something keep "
                "their raw call):",
            *_table(["Model", "Success", "p (McNemar)", "Grep hit", "Read valid", "Resolved", "Re-decoded", "Retry found",
                     "Time guided/raw"],
                    rows)]


def plot(results: dict, out: Path) -> None:
    """Accuracy per model and eval set, and the average time to decision and generation time."""
    plt = pyplot()
    names = [info["name"] for info in results["models"] if not info.get("error")]
    sets = list(results["sets"])
    fig, (acc, speed) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(1, len(sets))
    for i, set_name in enumerate(sets):
        scores = [results["results"][set_name].get(n, {}) for n in names]
        xs = [x + i * width for x in range(len(names))]
        bars = acc.bar(xs, [100 * (m.get("accuracy") or 0) for m in scores], width, label=set_name)
        acc.bar_label(bars, fmt="%.0f", fontsize=7)
        acc.scatter(xs, [100 * (m.get("success") or 0) for m in scores], marker="_", s=width * 900, color="black",
                    zorder=3, label="success (working call)" if i == 0 else None)
    acc.set_xticks([x + width * (len(sets) - 1) / 2 for x in range(len(names))], names, rotation=20, fontsize=8)
    acc.set_ylabel("% of cases")
    acc.set_ylim(0, 135)  # room above the bars for the legend
    acc.set_yticks(range(0, 101, 20))
    acc.legend(fontsize=8, loc="upper center", ncol=2)
    acc.set_title("decision accuracy (bars) and success (black lines)", fontsize=10)
    first = sets[0] if sets else None
    for offset, key, label in ((-0.2, "avg_time_to_decision_s", "time to decision"),
                               (0.2, "avg_gen_time_s", "generation time")):
        values = [(results["results"][first].get(n, {}) if first else {}).get(key) or 0 for n in names]
        bars = speed.bar([x + offset for x in range(len(names))], values, 0.4, label=label)
        speed.bar_label(bars, fmt="%.2f", fontsize=7)
    speed.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    speed.set_ylabel(f"seconds per question ({first})")
    speed.legend(fontsize=8)
    speed.set_title("speed", fontsize=10)
    fig.tight_layout()
    save_png(fig, out)


def write_outputs(results: dict, log: Path, json_path: Path | None, png: Path | None) -> None:
    if json_path is not None:
        write_json(json_path, results)
    if png is not None:
        plot(results, png)
    write_text(log, format_log(results))
