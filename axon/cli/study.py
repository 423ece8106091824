"""``axon study``: the whole study on the embedded server (sweep, A/B, models, capacity), then the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from axon.cli.args import MAX_SERVER_MEMORY_HELP, concurrency_list, memory_size, model_versions, positive_float, positive_int


def command(args: argparse.Namespace) -> int:
    from axon.study import plan as study
    from axon.study import report

    plan = study.StudyPlan(
        sweep=tuple(args.sweep),
        duration_s=args.duration,
        warmup_s=args.warmup,
        capacity_start_rps=args.capacity_start,
        repeat=args.repeat,
        engine=args.engine,
        max_server_memory=args.max_server_memory,
        models=tuple(args.models or _trained(args.artifacts)),
    )
    plan = study.plan_with_budgets(plan, args.pyproject)
    from axon.case import prepare

    # Said now, before any server starts: the engine the closed-loop cases will get.
    preview = prepare(plan.closed_loop_template())
    if preview.choice.notice:
        print(f"axon: notice: {preview.choice.notice}", file=sys.stderr)
    from axon.engines.payloads import resolve_artifacts
    from axon.offline.pipeline import ensure_writable

    resolve_artifacts(args.artifacts)  # a missing folder is said now, before the output folder is made
    ensure_writable(args.out)
    print(
        f"study: {len(plan.sweep)}-point sweep x 2 batching modes, models at c={plan.compare_at}, capacity search; {plan.repeat} interleaved repeats; "
        f"{plan.warmup_s:g} s warm-up + {plan.duration_s:g} s per case; budgets p50 {plan.p50_budget_ms:g} ms, p99 {plan.p99_budget_ms:g} ms ({plan.budgets_from})"
    )
    campaign = study.Study(args.artifacts, args.out, plan)
    campaign.said(preview.choice.notice)  # said above: the first case's record carries it too
    runs = campaign.run()
    campaign.writer.finish()  # rescued records are named before a report is written from the folder
    path = report.write_report(args.out)
    from axon.records.results import client_bound_summary

    print(client_bound_summary(runs))
    print(f"study: {len(runs)} runs in {args.out / study.STUDY_FILE}; report {path}")
    return 0


def _trained(artifacts: Path) -> list[str]:
    """The versions `axon train` built there, in axon's order (v1 first: the sweep's model)."""
    from axon.names import VERSIONS, model_name

    found = [v for v in VERSIONS if (artifacts / "models" / model_name(v) / "model.onnx").is_file()]
    return found or ["v1", "v2"]


def add_parser(sub) -> None:
    p = sub.add_parser("study", help="the whole study on the embedded server: sweep, A/B, models, capacity; then the report")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="output of `axon train` (default artifacts)")
    p.add_argument(
        "--out", type=Path, default=Path("results"), help="where study.json, report.md and the plots go (default results)"
    )
    p.add_argument("--duration", type=positive_float, default=3.0, help="measurement window per case in seconds (default 3)")
    p.add_argument(
        "--repeat",
        type=positive_int,
        default=3,
        help="runs per case, interleaved ON/OFF; tables show median [min-max] (default 3)",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "native", "python"),
        default="auto",
        help="engine of every part (default auto: native where h2load is found, else python, said once; Poisson arrivals always python, "
        "so --engine native leaves their capacity search out)",
    )
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up per case in seconds (default 1)")
    p.add_argument(
        "--sweep", type=concurrency_list, default=[1, 4, 16, 64, 128, 256], help="concurrencies (default 1,4,16,64,128,256)"
    )
    p.add_argument(
        "--capacity-start", type=positive_float, default=500.0, help="first offered rate of the capacity search (default 500/s)"
    )
    p.add_argument("--max-server-memory", type=memory_size, help=MAX_SERVER_MEMORY_HELP)
    p.add_argument(
        "--models",
        type=model_versions,
        help="the models compared, A/B and capacity (default: every model `axon train` built in --artifacts, e.g. v1,v2,pn)",
    )
    p.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"), help="where the [[tool.axon.slo]] budgets are")
    p.set_defaults(func=command)
