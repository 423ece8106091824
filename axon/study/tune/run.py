"""``axon tune``'s run: check the input, start (or reach) the server, search, judge, report, restore.

Every bad input is refused before a server starts or a candidate loads; the server-side checks
(explicit model control, the model served) come right after it answers, before any measurement.
Whatever happens during the search, the model is restored to its on-disk config at the end.
The CLI face (:mod:`axon.cli.tune`) parses the options and calls :func:`command`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from pathlib import Path

from axon.case import PreparedCase, Target, prepare, run_case
from axon.engines.loadgen import LoadSpec
from axon.engines.payloads import load_rows
from axon.errors import AxonError
from axon.names import ARCHITECTURES, DEFAULT_MODEL, MODEL_PREFIX, served_name
from axon.offline.repository import ServingOptions, apply_serving, config_text
from axon.records import atomic, results
from axon.serving import backends
from axon.study.tune import confirm, report, search, verdict
from axon.study.tune import space as space_mod
from axon.study.tune.control import LoadResult, ModelControl, ServerGone, process_state, seed_options

SCHEMA_VERSION = 1
CAPACITY_START_RPS = 500.0
# Embedded server crashes or hangs survived in one tune: each candidate gets its try and one
# more; past this many the tune stops, keeping what it measured.
MAX_RESTARTS = 6


def _kill(server) -> None:
    """SIGKILL the embedded server's whole process group now: a server that crashed into a futex
    or was stopped (SIGSTOP) does not act on SIGTERM, and a polite stop would wait 15 s for it."""
    import os
    import signal

    pid = getattr(server, "pid", None)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # setsid made the server its group's leader
    with contextlib.suppress(Exception):
        server.process.wait(timeout=5)


def _watch(server):
    """Why the embedded server's process is unwell (exited, stopped), for ModelControl's checks each second."""
    return lambda: server.death() or process_state(getattr(server, "pid", None))


def _restart(server, out: Path, index: int) -> Path:
    """Start a crashed or hung embedded server again on its ports (clients reconnect); keep the crash's log."""
    import shutil

    ep = server.endpoints
    ports = {
        "grpc": int(ep.grpc.rsplit(":", 1)[1]),
        "http": int(ep.http.rsplit(":", 1)[1]),
        "metrics": int(ep.metrics.rsplit(":", 1)[1].split("/")[0]),
    }
    kept = out / f"tritonserver-crash-{index + 1}.log"
    if server.log_path and Path(server.log_path).is_file():
        shutil.copyfile(server.log_path, kept)
    _kill(server)
    server.stop()
    server.ports = ports
    server.start()
    return kept


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _given_knobs(args: argparse.Namespace) -> dict:
    """The space file's knobs, with any knob given on the command line taking its place."""
    given: dict = space_mod.read_file(args.space) if args.space else {}
    for knob, flag in (
        ("instances", args.instances),
        ("delay_us", args.delay_us),
        ("preferred", args.preferred),
        ("max_batch", args.max_batch),
        ("max_queue", args.max_queue),
        ("queue_timeout_us", args.queue_timeout_us),
    ):
        if flag is not None:
            given[knob] = space_mod.split_list(flag)
    return given


def _check_args(args: argparse.Namespace) -> tuple[dict, verdict.Budget]:
    for name, value in (("--p50-ms", args.p50_ms), ("--p99-ms", args.p99_ms)):
        if not value > 0:
            raise AxonError(f"budget {name} must be > 0, got {value:g}")
    if args.objective == "capacity" and (args.onnx is not None or args.model.removeprefix(MODEL_PREFIX) not in ARCHITECTURES):
        raise AxonError(
            f"--objective capacity measures axon's own models ({', '.join(ARCHITECTURES)}), not {args.model or str(args.onnx)!r}"
        )
    if args.confirm_pairs < 2:
        raise AxonError(f"--confirm-pairs must be at least 2 (one pair has no spread to judge), got {args.confirm_pairs}")
    if args.apply and args.url:
        raise AxonError(
            "--apply writes the artifacts' repositories, which a server at --url does not serve; copy the winner's config.pbtxt from --out instead"
        )
    values = space_mod.parse(_given_knobs(args), batching=args.batching == "on")
    return values, verdict.Budget(args.p50_ms, args.p99_ms)


def command(args: argparse.Namespace) -> int:
    from axon.engines.model_choice import resolve

    if args.onnx is None:
        args.model = served_name(args.model or DEFAULT_MODEL)
    elif args.apply:
        raise AxonError(
            "--apply writes the trained models' repositories; for an --onnx model, copy the winner's config.pbtxt from --out"
        )
    values, budget = _check_args(args)
    if args.url:
        backends.check_url(args.url, "--url")
    artifacts = args.artifacts if args.artifacts.is_dir() or args.onnx is None else None
    if args.onnx is None:
        load_rows(args.artifacts)  # a damaged or missing artifact is said before OUT is made
    choice = resolve(args, artifacts, 1)
    try:
        return _command(args, choice, values, budget)
    finally:
        choice.close()


def _command(args: argparse.Namespace, choice, values: dict, budget: verdict.Budget) -> int:
    args.model = choice.name
    from axon.offline.pipeline import ensure_writable

    out = args.out / args.model
    if args.url:
        backends.check_url(args.url, "--url")
        if args.metrics_url:
            backends.check_metrics_url(args.metrics_url, "--metrics-url")
    # One case prepared now, before the server starts; every run varies only its load.
    template = LoadSpec(
        args.model,
        concurrency=args.concurrency[0],
        duration_s=args.duration,
        warmup_s=args.warmup,
        processes="auto",
        max_error_rate=0.0,
        engine="auto",
    )
    case = prepare(template, has_metrics=not args.url or bool(args.metrics_url))
    features, dataset = choice.feed, choice.dataset
    ensure_writable(out)
    for notice in choice.notices:
        _log(f"axon: notice: {notice}")
    if case.choice.notice:
        _log(f"axon: notice: {case.choice.notice}")
    reference = choice.reference or args.artifacts / "models" / args.model / "model.onnx"
    started = time.monotonic()
    server = backends.make_server(
        "external" if args.url else "embedded",
        batching=args.batching,
        models=None if args.url else [args.model],  # a model list puts the embedded server in explicit mode
        artifacts=choice.artifacts or args.artifacts,
        url=args.url,
        metrics_url=args.metrics_url,
        log_path=out / "tritonserver.log" if not args.url else None,
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(server)
        ep = server.endpoints
        control = ModelControl(
            ep.grpc,
            args.model,
            ssl=ep.tls,
            headers=ep.headers,
            log_path=getattr(server, "log_path", None),
            watch=None if args.url else _watch(server),
        )
        stack.callback(control.close)
        # Runs before the server's own stop: a server left dead or hung is killed, not waited for.
        stack.callback(lambda: control.gone and not args.url and _kill(server))
        initial = control.check()
        seed, batches = seed_options(initial)
        if batches != (args.batching == "on"):
            raise AxonError(
                f"the served {args.model} has dynamic batching {'on' if batches else 'off'}; give --batching {'on' if batches else 'off'}"
            )
        space = space_mod.build(seed, values, batches)
        return _tune(args, server, control, space, budget, features, dataset, reference, out, started, case)


def _tune(
    args,
    server,
    control: ModelControl,
    space: space_mod.Space,
    budget: verdict.Budget,
    features,
    dataset,
    reference: Path,
    out: Path,
    started: float,
    case: PreparedCase,
) -> int:
    batching = "on" if space.batching else "off"
    target = Target.of(server, batching, args.max_server_memory)
    plan = search.Plan(tuple(args.concurrency), args.repeat, budget, alpha=args.alpha)
    doc: dict = {
        "schema_version": SCHEMA_VERSION,
        "model": args.model,
        "started": results.now_iso(),
        "server": {"backend": server.backend, "version": getattr(server, "version", None), **server.endpoints.as_dict()},
        "plan": {
            "concurrencies": list(plan.concurrencies),
            "repeat": args.repeat,
            "p50_ms": budget.p50_ms,
            "p99_ms": budget.p99_ms,
            "objective": args.objective,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "min_gain": search.MIN_GAIN,
            "alpha": args.alpha,
            "confirm_pairs": args.confirm_pairs,
        },
        "space": space.as_dict(),
        "initial_config": control.initial,
    }

    def measure(options: ServingOptions, concurrency: int, label: str) -> dict:
        record = run_case(
            case.vary(concurrency=concurrency), target, features, reference if reference.is_file() else None, dataset
        )
        if record["incomplete_reason"] == "interrupted":
            raise KeyboardInterrupt
        if not record["complete"]:
            raise AxonError(
                f"tune stopped: {label}: run incomplete ({record['incomplete_reason']}); partial results in {out / report.RECORD_FILE}"
            )
        return record

    restarts: list[dict] = []
    doc["server_restarts"] = restarts

    def load(options: ServingOptions) -> LoadResult:
        """Load a candidate; a server that dies or hangs meanwhile is restarted and the candidate
        tried once more; twice down, it "crashed the server" and the search goes on."""
        cand = tuner.candidate(options)
        reasons: list[str] = []
        for attempt in range(2):
            _log(f"  loading {cand['id']} {cand['label']}" + (" again, on the restarted server" if attempt else ""))
            try:
                return control.load(control.candidate_json(options, batching))
            except ServerGone as exc:
                if args.url or len(restarts) >= MAX_RESTARTS:
                    raise AxonError(f"tune stopped: {exc}; partial results in {out / report.RECORD_FILE}") from None
                reasons.append(control.gone or str(exc))
                _log(
                    f"{exc}; restarting the embedded server on the same ports"
                    + ("" if attempt else ", then loading the candidate again")
                )
                restarts.append(
                    {
                        "at_candidate": cand["label"],
                        "candidate": cand["id"],
                        "reason": str(exc),
                        "runs_before": len(tuner.runs),
                        "log": str(_restart(server, out, len(restarts))),
                    }
                )
                control.wait_ready()
        return LoadResult(False, 0.0, f"{verdict.CRASHED} twice ({reasons[0]}; then {reasons[1]})", crashed=True)

    tuner = search.Search(space, plan, load, measure, _log)

    def save() -> None:
        doc.update(
            strategy=tuner.strategy,
            candidates=tuner.candidates,
            runs=tuner.runs,
            confirm_runs=tuner.confirm_runs,
            wall_s=time.monotonic() - started,
        )
        atomic.write_json(out / report.RECORD_FILE, doc)

    tuner.on_change = save
    _log(
        f"tune {args.model}: {space.size} candidates in the space; {args.repeat} interleaved rounds; concurrencies {','.join(map(str, plan.concurrencies))}; "
        f"budget p50 {budget.p50_ms:g} ms, p99 {budget.p99_ms:g} ms; {args.warmup:g} s warm-up + {args.duration:g} s per run"
    )
    capacities: dict[str, dict] = {}
    confirmation = None
    try:
        tuner.run()
        if args.objective == "capacity":
            capacities = _capacities(args, server, load, tuner, batching, budget, out)
        else:
            confirmation = _confirm(args, tuner, budget, doc)
    finally:
        # Triton keeps the last override even across a plain load: restore explicitly, whatever happened.
        with contextlib.suppress(Exception):
            doc["restored"] = control.restore()
            _log(f"restored {args.model} to its on-disk config in {doc['restored']['seconds']:.1f} s")
        doc["last_candidate_loaded"] = tuner.last_loaded
        save()
    evaluations = verdict.evaluate(tuner.candidates, tuner.runs, budget, capacities, args.alpha)
    if confirmation is not None:
        evaluations = [
            dataclasses.replace(e, confirmation=confirmation) if e.cid == confirmation["candidate"] else e for e in evaluations
        ]
    ranked = verdict.rank(evaluations, args.objective)
    if args.objective == "capacity":
        win = verdict.winner(evaluations, args.objective)
    else:  # crowned only by the head-to-head
        win = next((e for e in evaluations if confirmation and confirmation["held"] and e.cid == confirmation["candidate"]), None)
    line = report.summary(win, evaluations[0], budget, args.objective, confirmation, evaluations)
    winner_options = tuner.options_of(win.cid) if win else None
    winner_config = None
    if winner_options is not None:
        if args.url:  # the served config, edited: what the external server was measured with
            from google.protobuf import json_format, text_format
            from tritonclient.grpc import model_config_pb2 as mc

            winner_config = text_format.MessageToString(
                apply_serving(json_format.ParseDict(control.initial, mc.ModelConfig()), winner_options, batching)
            )
        else:
            winner_config = config_text(args.model, "embedded", batching, winner_options)
    doc.update(
        capacities=capacities,
        evaluations=[e.as_dict() for e in ranked],
        winner=win.cid if win else None,
        verdict=line,
        confirmation=confirmation,
        wall_s=time.monotonic() - started,
    )
    applied: list[Path] = []
    if args.apply and winner_options is not None:
        applied = report.apply_winner(args.model, batching, winner_options, args.artifacts, args.gpu_repository)
    doc["applied"] = [str(p) for p in applied]
    atomic.write_json(out / report.RECORD_FILE, doc)
    written = report.write_outputs(out, doc, ranked, tuner.candidates, line, budget, win, winner_config)
    print(report.text_table(ranked, tuner.candidates, args.objective))
    print("(c = concurrency of the operating point: the best one within budget; ! = breaks the budget everywhere, cannot win)")
    print(line)
    if args.apply:
        print("applied: " + (", ".join(map(str, applied)) if applied else "nothing (no winner)"))
    restored = doc.get("restored")
    if not restored:
        print(f"WARNING: {args.model} could not be restored to its on-disk config; reload it yourself")
    elif not restored["matches_initial"]:
        print(
            f"note: {args.model} now serves its on-disk config, which differs from what was served before tuning (that was an override)"
        )
    print(
        f"tune: {len(tuner.runs)} runs over {len(tuner.candidates)} candidates in {doc['wall_s']:.0f} s; {', '.join(str(p) for p in written.values())}, {out / report.RECORD_FILE}"
    )
    return 0


def _confirm(args, tuner: search.Search, budget: verdict.Budget, doc: dict) -> confirm.Confirmation | None:
    """The screen's nominee against the default, head-to-head on fresh runs; None when there is no nominee."""
    evaluations = verdict.evaluate(tuner.candidates, tuner.runs, budget, alpha=args.alpha)
    nominee = verdict.nominee(evaluations)
    if nominee is None:
        return None
    default = evaluations[0]
    breaks = default.point is None or not default.point.in_budget
    c_default = default.point.concurrency if default.point else nominee.point.concurrency
    a, b = tuner.head_to_head(nominee.cid, c_default, nominee.point.concurrency, args.confirm_pairs)
    found = confirm.decide(
        nominee.cid, a, b, nominee.comparison.holm_p, args.repeat, args.confirm_pairs, budget, args.alpha, breaks
    )
    doc["confirmation"] = found
    _log(f"{nominee.cid}: {confirm.sentence(found, nominee.cid)}")
    return found


def _capacities(args, server, load, tuner: search.Search, batching: str, budget: verdict.Budget, out: Path) -> dict[str, dict]:
    """The open-loop capacity search under the p99 budget, per measured candidate (loaded again first)."""
    from axon.study import plan as study

    plan = study.StudyPlan(
        duration_s=args.duration,
        warmup_s=args.warmup,
        repeat=args.repeat,
        p99_budget_ms=budget.p99_ms,
        p50_budget_ms=budget.p50_ms,
        capacity_start_rps=CAPACITY_START_RPS,
    )
    found = {}
    for cand in list(tuner.candidates):
        options = tuner.options_of(cand["id"])
        if cand["error"]:
            continue
        loaded = load(options)
        if not loaded.ok:
            cand["capacity_error"] = loaded.error
            continue
        tuner.last_loaded = cand["id"]
        # Constant spacing on the native engine: h2load keeps the schedule up to the server's
        # limit, where the python engine fell behind first (issue 19).
        _log(
            f"capacity of {cand['id']} {cand['label']} (open loop, constant spacing, native engine where available, p99 ≤ {budget.p99_ms:g} ms)"
        )
        runner = study.Study(args.artifacts, out / "capacity" / cand["id"], plan, log=_log)
        runner.capacity(server, batching, args.model.removeprefix(MODEL_PREFIX), "constant")
        table = study.capacity_table(runner.runs, budget.p99_ms)
        found[cand["id"]] = next(iter(table.values())) if table else {"max_rate": None}
    return found
