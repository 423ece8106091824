"""report.md: the document that puts the tables and plots in order, its measurement notes, and the files it is read from and written to."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from axon.errors import AxonError
from axon.records import answered
from axon.records.results import benchmark_runs, read_measurements, read_results
from axon.study.plan import STUDY_FILE
from axon.study.report import paths
from axon.study.report.plots import PLOTS, figures, not_drawn
from axon.study.report.selection import budgets, compare_at, is_study, main_model, study_part, study_plan
from axon.study.report.tables import (
    ab_table,
    breakdown_table,
    capacity_markdown,
    cases_table,
    direct_markdown,
    model_table,
    sweep_table,
)
from axon.study.sizing import section


def _image(key: str, skip: dict[str, str], said: set[str]) -> str:
    said.add(key)
    return _not_drawn(key, skip) if key in skip else f"![{key}]({PLOTS[key]})"


def _not_drawn(key: str, skip: dict[str, str]) -> str:
    return f"_{PLOTS[key]} not drawn: {skip[key]}_"


def markdown(runs: list[dict], source: str | None = None) -> str:
    """report.md: a study's full report, or for any other results file the parts that apply."""
    first = runs[0]
    m = first["machine"]
    p50_budget, p99_budget = budgets(runs)
    data = first.get("dataset") or {}
    study = is_study(runs)
    model = main_model(runs)
    c = compare_at(runs, model)
    skip = not_drawn(runs)
    said: set[str] = set()
    repeat = f"{study_plan(runs).get('repeat', 1)} interleaved repeats (ON, OFF, ON, OFF, ...). " if study else ""
    lines = [
        "# axon study" if study else f"# axon results{f': {source}' if source else ''}",
        "",
        f"Measured {first['timestamp'][:10]} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB), "
        f"{first['server']['backend']} Triton {first['server']['version']}, git {str(first.get('git_commit'))[:10]}. "
        f"Data: {data.get('name', '?')} ({data.get('rows', '?')} rows, seed {data.get('seed', '?')}). "
        f"Each case: {first['load']['warmup_s']:g} s warm-up, {first['load']['duration_s']:g} s window"
        f"{', ' + repeat if repeat else '. '}Engines: {_engines(runs)}."
        + (
            f" Budgets: p50 {p50_budget:g} ms, p99 {p99_budget:g} ms."
            if study
            else f" Budget lines: p50 {p50_budget:g} ms, p99 {p99_budget:g} ms, the study's defaults (a results file carries no budgets)."
        ),
        "",
    ]
    if not study:
        lines += ["## Cases", cases_table(runs), ""]
    if study or "ab" not in skip:
        lines += [f"## Batching ON vs OFF (c={c})", ab_table(runs), "", _image("ab", skip, said), ""]
    if study or "sweep" not in skip:
        lines += [
            f"## Concurrency sweep ({model.removeprefix('particle_classifier_')})",
            sweep_table(runs),
            "",
            _image("sweep", skip, said),
            "",
        ]
    lines += [_image("cdf", skip, said), ""]
    if study or len({r["model"] for r in runs}) > 1:
        lines += [f"## Models at c={c}", model_table(runs, c), ""]
    if study:
        lines += [
            "## Capacity under the p99 budget (open loop: constant spacing on the native engine, Poisson on the python engine)",
            capacity_markdown(runs),
            "",
        ]
    if study or "rate" not in skip:
        lines += ([] if study else ["## Open loop: latency vs throughput"]) + [_image("rate", skip, said), ""]
    if study_part(runs, "direct"):
        lines += ["## Direct vs service", direct_markdown(runs), "", f"![direct]({PLOTS['direct']})", ""]
    sizing = section.markdown(runs) if study else None
    if sizing:
        lines += ["## Sizing: trigger cores one server carries", sizing, ""]
    if study or "breakdown" not in skip:
        lines += ["## Server-side breakdown", breakdown_table(runs), "", _image("breakdown", skip, said), ""]
    if paths.path_runs(runs):
        lines += ["## Trigger paths", paths.markdown(runs, p99_budget), f"![path]({paths.PLOT_FILE})", ""]
    unsaid = [key for key in PLOTS if key in skip and key not in said]
    if unsaid:
        lines += ["## Plots not drawn", *(f"- {_not_drawn(key, skip)}" for key in unsaid), ""]
    lines.append(_flags(runs))
    return "\n".join(lines)


def _engines(runs: list[dict]) -> str:
    found: dict[str, int] = {}
    for r in runs:
        e = r.get("engine") or {}
        name = f"{e.get('name', '?')} ({e.get('tool', '?')} {e.get('version', '')})".replace(" )", ")")
        found[name] = found.get(name, 0) + 1
    return ", ".join(f"{name} for {n} runs" for name, n in found.items())


def _flags(runs: list[dict]) -> str:
    hot = [r for r in runs if r["client"]["client_bound"]]
    behind = [r for r in runs if (r.get("schedule") or {}).get("behind")]
    lines = ["## Measurement notes"]
    lines.append(
        f"- {len(hot)} of {len(runs)} runs were client-bound (a load-generator process above {runs[0]['client']['threshold_cores']:g} of a core)."
    )
    study = " Their rates count as failures in the capacity search." if is_study(runs) else ""
    lines.append(f"- {len(behind)} open-loop runs fell behind their schedule.{study}")
    bad = sum(r["correctness"]["mismatches"] for r in runs)
    lines.append(
        f"- correctness: {sum(r['correctness']['checked'] for r in runs)} responses checked against local onnxruntime, {bad} mismatches (native runs: the one body, checked before the run)."
    )
    paths = [r for r in runs if r.get("path")]
    if paths:
        agree = sum(bool(r["path"]["verification"]["verified"]) for r in paths)
        lines.append(
            f"- trigger paths: {agree} of {len(paths)} runs' calls agree, model by model, with Triton's success counters."
        )
    native_runs = [r for r in runs if r.get("verification") and not r.get("path")]
    unverified = [r for r in native_runs if r["verification"].get("verified") is False]
    if native_runs:
        lines.append(
            f"- native engine: {len(native_runs) - len(unverified)} of {len(native_runs)} runs verified against Triton's success counter."
        )
    unconfirmed = [r for r in runs if r.get("throughput_basis") in (answered.SERVER, answered.NONE)]
    if unconfirmed:
        lines.append(
            f"- {len(unconfirmed)} native runs' completions disagreed with Triton's counts (unverified): their req/s is the share Triton "
            "confirmed answered (marked *), or none (–), never h2load's count."
        )
    mixed = [r for r in runs if (r.get("latency_apart") or {}).get("of") == "http_200_unresolved"]
    if mixed:
        lines.append(
            f"- {len(mixed)} native runs show no latency: Triton rejected or failed some of their requests, which h2load counts as "
            "HTTP 200 and cannot tell apart, so no percentile is the answered requests' (the rows are kept under latency_apart)."
        )
    # In-process runs are the reference itself: nothing to check them against, nothing to flag.
    unchecked = [r for r in runs if not r["correctness"].get("enabled", True) and (r.get("engine") or {}).get("name") != "direct"]
    if unchecked:
        reasons = "; ".join(dict.fromkeys(str(r["correctness"].get("reason")) for r in unchecked))
        lines.append(f"- correctness unchecked in {len(unchecked)} of {len(runs)} runs: {reasons}.")
    notices = sorted({r["engine"]["notice"] for r in runs if (r.get("engine") or {}).get("notice")})
    notices += sorted({r["dataset"]["notice"] for r in runs if (r.get("dataset") or {}).get("notice")})
    lines += [f"- notice: {n}" for n in notices]
    return "\n".join(lines)


def load(path: Path) -> tuple[list[dict], Path, str | None]:
    """The runs of a results folder (its study.json) or of any axon results file, where the
    report goes (the folder; beside a file, ``<name>-report/``), and the file's name."""
    path = Path(path)
    if path.is_dir():
        study_file = path / STUDY_FILE
        if not study_file.is_file():
            raise AxonError(
                f"no {STUDY_FILE} in {path}; give a results file (axon bench --output) or run the study first (`make bench` or `axon study`)"
            )
        return read_results(study_file), path, None
    if not path.exists():
        raise AxonError(f"{path}: no such file or folder")
    kind, payload = read_measurements(path)
    if kind == "other":
        raise AxonError(
            f"{path}: a JSON object that is neither axon results (schema_version, runs) nor a pytest-benchmark JSON (benchmarks)"
        )
    runs = benchmark_runs(payload, path) if kind == "pytest-benchmark" else payload["runs"]
    return runs, path.parent / f"{path.stem}-report", path.name


def check_out(out: Path) -> None:
    """The report's folder made and written to before any plot is drawn: a folder that can't
    take it (read-only, or under a file) is one line, not a traceback after the work.

    Folders made for the check are removed when it fails.
    """
    import contextlib
    import tempfile

    missing = [p for p in [out, *out.parents] if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".axon-probe-"):
            pass
    except OSError as exc:
        for folder in missing:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        blocker = next((a for a in out.parents if a.exists()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None and not blocker.is_dir() else exc.strerror or str(exc)
        raise AxonError(f"cannot write the report to {out}: {why}") from None


def write_report(path: Path, out: Path | None = None) -> Path:
    """Read a study folder, any axon results file or a pytest-benchmark JSON of axon's cases;
    write report.md and the plots that apply.

    Plots that the runs can't support (a sweep of one concurrency, an A/B without both modes)
    are not drawn; report.md says which, and why.
    """
    runs, default_out, source = load(path)
    if not runs:
        raise AxonError(f"{path} holds no runs")
    out = Path(out or default_out)
    check_out(out)
    for key, fig in figures(runs).items():
        fig.savefig(out / PLOTS.get(key, paths.PLOT_FILE), dpi=110)  # the path plot is drawn only where there are paths
        plt.close(fig)
    report = out / "report.md"
    report.write_text(markdown(runs, source) + "\n")
    return report
