"""The report's markdown tables: A/B, sweep, models, server breakdown, capacity, direct vs service, every case."""

from __future__ import annotations

import math

from axon.records import answered, repeats
from axon.study.plan import capacity_table
from axon.study.report.selection import (
    MODES,
    budgets,
    closed_repeats,
    compare_at,
    main_model,
    median_of,
    study_part,
    sweep_by_concurrency,
)


def _fmt(value, digits=2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def ab_table(runs: list[dict], concurrency: int | None = None, model: str | None = None) -> str:
    """ON vs OFF as median [min–max] over repeats; the ratio only where the ranges do not overlap."""
    model = model or main_model(runs)
    concurrency = concurrency or compare_at(runs, model)
    on, off = closed_repeats(runs, model, "on", concurrency), closed_repeats(runs, model, "off", concurrency)
    if not on or not off:
        return "_no A/B pair in these results_"
    lines = [f"| {model}, c={concurrency} | batching ON | batching OFF | ON / OFF |", "|---|---:|---:|---:|"]
    rows = [("throughput (req/s)", "throughput_rps", ",.0f")] + [
        (f"{k} latency (ms)", f"{k}_ms", ".2f") for k in ("p50", "p95", "p99")
    ]
    for name, metric, spec in rows:
        ratio = repeats.ratio(on, off, metric)
        lines.append(f"| {name} | {ratio.a.format(spec)} | {ratio.b.format(spec)} | {ratio.format()} |")
    return (
        "\n".join(lines)
        + f'\n\n_median [min–max] over {len(on)} interleaved runs a side; ON / OFF per pair, or "within noise" where the ranges overlap_'
    )


def _cells(group: list[dict] | None) -> list[str]:
    """req/s, p50 and p99 over a case's repeats: "–" where none was measured, "*" where Triton's counts, not h2load's, gave req/s."""
    if not group:
        return ["–"] * 3
    s = repeats.summarise(group)
    cells = [s["throughput_rps"].format(), s["p50_ms"].format(".2f"), s["p99_ms"].format(".2f")]
    cells = [cell.replace("nan", "–") for cell in cells]
    if any(r.get("throughput_basis") == answered.SERVER for r in group):
        cells[0] += "*"
    return cells


def sweep_table(runs: list[dict], model: str | None = None) -> str:
    model = model or main_model(runs)
    groups = {b: sweep_by_concurrency(runs, b, model) for b in MODES}
    modes = [b for b in MODES if groups[b]]
    names = [(b or "?").upper() for b in modes]
    lines = [
        "| concurrency | " + " | ".join(f"{n} req/s | {n} p50 | {n} p99" for n in names) + " |",
        "|---:|" + "---:|" * 3 * len(modes),
    ]
    for c in sorted(set().union(*(groups[b] for b in modes))):
        lines.append(f"| {c} | " + " | ".join(cell for b in modes for cell in _cells(groups[b].get(c))) + " |")
    return "\n".join(lines) + "\n\n_median [min–max] over repeats; latencies in ms_"


def model_table(runs: list[dict], concurrency: int | None = None) -> str:
    concurrency = concurrency or compare_at(runs)
    lines = ["| model | batching | req/s | p50 ms | p99 ms | avg batch | engine |", "|---|---|---:|---:|---:|---:|---|"]
    for model in sorted({r["model"] for r in runs}):
        for batching in MODES:
            group = closed_repeats(runs, model, batching, concurrency)
            if group:
                batch = median_of((r.get("server_metrics") or {}).get("avg_batch_size") for r in group)
                engine = ",".join(sorted({(r.get("engine") or {}).get("name", "?") for r in group}))
                lines.append(
                    f"| {model} | {batching or '?'} | " + " | ".join(_cells(group)) + f" | {_fmt(batch, 1)} | {engine} |"
                )
    return "\n".join(lines)


BREAKDOWN = (
    "avg_batch_size",
    "queue_us_per_request",
    "compute_input_us_per_request",
    "compute_infer_us_per_request",
    "compute_output_us_per_request",
)


def server_medians(group: list[dict]) -> dict[str, float | None]:
    return {k: median_of((r.get("server_metrics") or {}).get(k) for r in group) for k in BREAKDOWN}


def breakdown_table(runs: list[dict]) -> str:
    lines = ["| batching | c | avg batch | queue µs | compute in µs | infer µs | out µs |", "|---|---:|---:|---:|---:|---:|---:|"]
    for batching in MODES:
        for c, group in sweep_by_concurrency(runs, batching, main_model(runs)).items():
            m = server_medians(group)
            lines.append(
                f"| {batching or '?'} | {c} | {_fmt(m['avg_batch_size'], 1)} | "
                + " | ".join(_fmt(m[k], 0) for k in BREAKDOWN[1:])
                + " |"
            )
    return "\n".join(lines) + "\n\n_per request, from Triton's own counters over each window; median over repeats_"


def capacity_markdown(runs: list[dict]) -> str:
    _, p99_budget = budgets(runs)
    table = capacity_table(runs, p99_budget)
    if not table:
        return "_no capacity search in these results_"
    lines = [
        f"| model | batching | arrivals (engine) | highest rate with p99 ≤ {p99_budget:g} ms | runs passing there | p99 there (median) | first failing rate | runs passing there | what stopped it |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for (model, batching, arrivals), e in sorted(table.items()):
        lines.append(
            f"| {model} | {batching} | {arrivals} | {_fmt(e['max_rate'], 0)} req/s | {e['runs_at_max'] or '–'} | {_fmt(e['p99_at_max'])} ms | {_fmt(e['first_fail'], 0)} | {e['runs_at_fail'] or '–'} | {e['stopped_by'] or '–'} |"
        )
    return "\n".join(lines) + "\n\n_a rate holds when at least half of its runs pass; the boundary is confirmed with repeats_"


def direct_vs_service(runs: list[dict]) -> list[dict]:
    """Per model and rows per request: client CPU per row in-process and through Triton.

    Every number is a median over that case's repeats, computed from the records' own
    ``client.cpu_us_per_row`` and latencies. ``break_even_us_per_row`` is the native client's
    CPU per row for a remote call: a model that costs more than that per row in-process is
    cheaper for the client to offload.
    """
    out = []
    direct = repeats.group(study_part(runs, "direct"), key=lambda r: f"{r['model']}|{r['load']['rows_per_request']}")
    service = study_part(runs, "service")
    for key, group in direct.items():
        model, rows = key.split("|")
        row = {
            "model": model,
            "rows": int(rows),
            "direct_cpu_us_per_row": median_of(r["client"]["cpu_us_per_row"] for r in group),
        }
        for engine in ("native", "python"):
            svc = [
                r
                for r in service
                if r["model"] == model and r["load"]["rows_per_request"] == int(rows) and r["engine"]["name"] == engine
            ]
            row[f"{engine}_cpu_us_per_row"] = median_of(r["client"]["cpu_us_per_row"] for r in svc)
            row[f"{engine}_p50_ms"] = median_of(r["latency_ms"]["p50"] for r in svc)
            row[f"{engine}_p99_ms"] = median_of(r["latency_ms"]["p99"] for r in svc)
            row[f"{engine}_runs"] = len(svc)
        row["break_even_us_per_row"] = row["native_cpu_us_per_row"]
        out.append(row)
    return out


def _times(a: float | None, b: float | None) -> str:
    return f"{a / b:,.1f}×" if a is not None and b else "–"


def direct_markdown(runs: list[dict]) -> str:
    rows = direct_vs_service(runs)
    if not rows:
        return "_no direct-vs-service cases in these results_"
    lines = [
        "| model | rows/request | direct CPU µs/row | service CPU µs/row, native client | service CPU µs/row, python client | service p50 ms (native) | service p99 ms (native) | break-even model cost µs/row |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['rows']} | {_fmt(r['direct_cpu_us_per_row'], 3)} | {_fmt(r['native_cpu_us_per_row'], 3)} | {_fmt(r['python_cpu_us_per_row'], 3)} "
            f"| {_fmt(r['native_p50_ms'], 3)} | {_fmt(r['native_p99_ms'], 3)} | {_fmt(r['break_even_us_per_row'], 3)} |"
        )
    lines += [
        "",
        "_client CPU = the client process's user+system time per row (direct: onnxruntime, 1 thread, in-process; service: Triton batching on, "
        "one request in flight); median over repeats. Offloading saves client CPU for a model that costs more per row in-process than the break-even._",
        "",
    ]
    lines += direct_sentences(rows)
    return "\n".join(lines)


def direct_sentences(rows: list[dict]) -> list[str]:
    """One plain sentence per model: what a remote call costs the client against the inference."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["rows"])
        short = model.removeprefix("particle_classifier_")
        first = mine[0]
        # Without h2load (or with --engine python) there is no native client: judge by the python one, and say so.
        client = "native" if any(r["native_cpu_us_per_row"] for r in mine) else "python"
        key = f"{client}_cpu_us_per_row"
        ratios = ", ".join(f"{_times(r[key], r['direct_cpu_us_per_row'])} at {r['rows']}" for r in mine)
        pays = [r["rows"] for r in mine if r[key] and r["direct_cpu_us_per_row"] and r[key] < r["direct_cpu_us_per_row"]]
        verdict = (
            f"from {pays[0]} rows per request on, offloading {short} saves client CPU"
            if pays
            else f"at no measured request size does offloading {short} save client CPU"
        )
        if client == "python":
            other = "(no native client was measured: a native one costs less)"
        elif first["python_cpu_us_per_row"]:
            other = f"({_times(first['python_cpu_us_per_row'], first['direct_cpu_us_per_row'])} with a Python one)"
        else:
            other = "(no Python client was measured: --engine native)"
        out.append(
            f"- For {short}, a remote call costs the client {_times(first[key], first['direct_cpu_us_per_row'])} the CPU of running the model "
            f"in-process at {first['rows']} row per request with a {client} client {other}; "
            f"per row and {client} client: {ratios} rows per request. So {verdict}."
        )
    return out


def cases_table(runs: list[dict]) -> str:
    """Every case in the file: median [min–max] over its repeats, and what its runs said."""
    lines = ["| case | runs | req/s | p50 ms | p99 ms | engine | verdict |", "|---|---:|---:|---:|---:|---|---|"]
    for key, group in repeats.group(runs).items():
        engine = ",".join(sorted({(r.get("engine") or {}).get("name", "?") for r in group}))
        verdicts = [v for r in group for v in r["verdicts"] + ([r["incomplete_reason"]] if r["incomplete_reason"] else [])]
        unchecked = not all(r["correctness"].get("enabled", True) for r in group)
        verdict = "; ".join(dict.fromkeys(verdicts)) or ("unchecked" if unchecked else "ok")
        if any(r["client"]["client_bound"] for r in group):
            verdict += " [client-bound]"
        lines.append(f"| {key} | {len(group)} | " + " | ".join(_cells(group)) + f" | {engine} | {verdict} |")
    return "\n".join(lines) + "\n\n_median [min–max] over repeats_"
