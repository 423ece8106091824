"""`axon bench`: cases (sweeps, A/B) over a server axon starts or one it is pointed at."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from axon import engines, interrupts
from axon.cli.args import (
    MAX_SERVER_MEMORY_HELP,
    concurrency_list,
    fraction_of_one,
    header,
    memory_size,
    positive_float,
    positive_int,
    processes,
)
from axon.cli.model_args import add_model_options
from axon.engines import loadgen
from axon.engines.loadgen import LoadSpec
from axon.errors import AxonError
from axon.progress import CaseProgress
from axon.records import answered, repeats, results
from axon.serving import backends


def _label(spec: LoadSpec, batching: str | None) -> str:
    load = f"c={spec.concurrency}" if spec.mode == "closed" else f"rate={spec.rate:g}/s {spec.distribution}"
    return f"{spec.model}, batching {batching or '?'}, {load}"


def _status(run: dict) -> str:
    """A passing run's verdict: "ok" only when its responses were checked, else "unchecked"."""
    return "ok" if run["correctness"]["enabled"] else "unchecked"


def _schedule_note(r: dict) -> str:
    """Open loop: did the sender keep its schedule, and whose was the lag? (latencies are from intended send times)"""
    sched = r.get("schedule")
    if not sched:
        return ""
    text = (
        f"\n(schedule, {r['load']['rate']:g}/s {r['load']['distribution']} on {r['engine']['name']}: sent {sched['sent_rps']:,.0f}/s "
        f"({sched['sent_rps'] / sched['offered_rps']:.3f} of offered); send lag p50 {sched['lag_p50_ms']:.2f}, p99 {sched['lag_p99_ms']:.2f}, max {sched['lag_max_ms']:.2f} ms"
    )
    if "client_lag_p99_ms" in sched:
        text += f"; the client's own lag p99 {sched['client_lag_p99_ms']:.2f} ms, {sched['server_held']:,} requests held back by the server"
    if sched.get("not_sent"):
        text += f"; {sched['not_sent']:,} due requests not sent: all {sched['in_flight_limit']:,} allowed in flight were busy (CLIENT_OVERLOAD)"
    if "uncorrected_latency_ms" in sched:
        text += (
            f"; p99 from the actual send {sched['uncorrected_latency_ms']['p99']:.2f} ms (what coordinated omission would report)"
        )
    if r["engine"].get("fan_out") and r["engine"].get("connections", 1) > 1:
        text += f"; {r['engine']['fan_out']}"
    return text + ")"


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"  # NaN: no answered request to time


def _rps(r: dict) -> str:
    """Throughput as measured; Triton's confirmed share marked "*" where h2load's counts disagreed with it; "-" where nothing was confirmed."""
    value = r["throughput_rps"]
    if value != value:
        return "-"
    return f"{value:,.0f}" + ("*" if r.get("throughput_basis") == answered.SERVER else "")


def _answered_notes(runs: list[dict]) -> str:
    """What the req/s and latency cells of a native run whose rows Triton's counts don't vouch for mean."""
    notes = ""
    if any(r.get("throughput_basis") in (answered.SERVER, answered.NONE) for r in runs):
        notes += (
            "\n(req/s * : h2load's completions disagreed with Triton's counts (unverified), so req/s is the share Triton confirmed answered, "
            "the rest counted in err as UNCONFIRMED; - : no count to confirm any)"
        )
    if any((r.get("latency_apart") or {}).get("of") == "http_200_unresolved" for r in runs):
        notes += (
            "\n(latency - on the native engine: Triton rejected or failed some requests, which h2load counts as HTTP 200 and cannot tell apart, "
            "so no percentile is shown as the answered requests'; the record keeps those rows under latency_apart)"
        )
    return notes


def table(runs: list[dict]) -> str:
    head = f"{'model':<24} {'batch':>5} {'load':>16} {'engine':>6} {'rep':>3} {'req/s':>9} {'p50':>7} {'p95':>7} {'p99':>7} {'err':>5} {'avg bs':>6} {'cpu':>5}  verdict"
    lines = [head, "-" * len(head)]
    for r in runs:
        load = (
            f"c={r['load']['concurrency']}"
            if r["load"]["mode"] == "closed"
            else f"{r['load']['rate']:g}/s {r['load']['distribution'][:4]}"
        )
        lat = r["latency_ms"]
        sm = r.get("server_metrics") or {}
        bs = sm.get("avg_batch_size")
        bs_text = "?" if bs is None else f"{bs:.1f}"
        measured_cpu = [c for c in r["client"]["cores_per_process"] if c == c]  # NaN: a worker that never reached the window
        cpu_text = f"{max(measured_cpu):.2f}" if measured_cpu else "-"
        engine = (r.get("engine") or {}).get("name", "?")
        rep = str(r["repeat"]["index"] + 1) if r.get("repeat") else "-"
        verdict = (
            _status(r) if r["passed"] else "; ".join(r["verdicts"] + ([r["incomplete_reason"]] if r["incomplete_reason"] else []))
        )
        if r["client"]["client_bound"]:
            verdict += " [client-bound]"
        lines.append(
            f"{r['model']:<24} {r['batching'] or '?':>5} {load:>16} {engine:>6} {rep:>3} {_rps(r):>9} {_ms(lat['p50']):>7} {_ms(lat['p95']):>7} "
            f"{_ms(lat['p99']):>7} {r['requests']['failed']:>5} {bs_text:>6} {cpu_text:>5}  {verdict}"
        )
    notes = (
        "\n(latencies in ms; rep = repeat number, - for a single run; err = failed requests; "
        "cpu = client cores per worker process, or per h2load thread for the native engine, - where not measured)"
    )
    notes += _answered_notes(runs)
    for r in runs:
        notes += _schedule_note(r)
    for reason in dict.fromkeys(r["correctness"]["reason"] for r in runs if not r["correctness"]["enabled"]):
        notes += f"\n(unchecked: responses not compared with local onnxruntime: {reason})"
    return "\n".join(lines) + notes


def specs_from_args(args: argparse.Namespace) -> list[LoadSpec]:
    base = LoadSpec(
        model=args.model or "?",  # settled once the model is (from --model, --onnx or --path)
        duration_s=args.duration,
        warmup_s=args.warmup,
        requests=args.requests,
        rows_per_request=args.rows_per_request,
        timeout_s=args.timeout,
        processes=args.processes,
        seed=args.seed,
        max_error_rate=args.max_error_rate,
        engine=args.engine,
        connections=args.connections,
        on_unavailable=args.on_unavailable,
        timeline_s=args.timeline,
        max_in_flight=args.max_in_flight,
        concurrency=1,  # replaced below
    )
    if args.rate is not None:
        specs = [replace(base, concurrency=None, rate=args.rate, distribution="poisson" if args.poisson else "constant")]
    elif args.sweep:
        specs = [replace(base, concurrency=c) for c in args.sweep]
    else:
        specs = [replace(base, concurrency=args.concurrency)]
    return specs  # validated once, by axon.case.prepare


def _print_repeat_summary(runs: list[dict], ab: bool) -> None:
    """Median [min–max] per case over its repeats; with --ab, ON/OFF per case or "within noise"."""
    groups = repeats.group(runs)
    if all(len(g) == 1 for g in groups.values()):
        return
    print("\nover repeats: median [min–max]")
    for key, group in groups.items():
        s = repeats.summarise(group)
        print(
            f"  {key}: {s['throughput_rps'].format()} req/s, p50 {s['p50_ms'].format('.2f')} ms, p99 {s['p99_ms'].format('.2f')} ms ({len(group)} runs)"
        )
    if ab:
        by_mode = {mode: [r for r in runs if r["batching"] == mode] for mode in ("on", "off")}
        for key in dict.fromkeys(repeats.case_key({**r, "batching": None}) for r in runs):
            on = [r for r in by_mode["on"] if repeats.case_key({**r, "batching": None}) == key]
            off = [r for r in by_mode["off"] if repeats.case_key({**r, "batching": None}) == key]
            if on and off:
                print(
                    f"  ON/OFF {key.replace('batching ?, ', '')}: throughput {repeats.ratio(on, off).format()}, p50 {repeats.ratio(on, off, 'p50_ms').format()}"
                )


def _check_options(args: argparse.Namespace) -> None:
    """Options that do nothing in the mode given are errors, said before any work starts."""
    if (args.tls or args.ca_file) and not args.url:
        raise AxonError("--tls and --ca-file talk to a server given by --url (axon serve --tls-cert/--tls-key starts one)")
    if args.ca_file and not args.tls:
        raise AxonError("--ca-file is the CA that verifies a TLS server: give --tls with it")
    if args.url:
        backends.check_url(args.url, "--url")
        if args.metrics_url:
            backends.check_metrics_url(args.metrics_url, "--metrics-url")
        if args.ab:
            raise AxonError("--ab compares batching on and off on servers axon starts; it can't be used with --url")
        if args.backend is not None:
            raise AxonError("--backend picks the server axon starts; with --url axon starts none")
    else:
        given = [
            name for name, value in (("--metrics-url", args.metrics_url), ("--tls", args.tls), ("--header", args.header)) if value
        ]
        if given:
            raise AxonError(f"{', '.join(given)} describe(s) a server given with --url; axon starts this one itself")
    if args.ab and args.batching is not None:
        raise AxonError("--batching names one mode, and --ab runs both: give one of them")
    if args.poisson and args.rate is None:
        raise AxonError("--poisson shapes open-loop arrivals: give --rate with it")
    if args.path is not None:
        given = [
            name
            for name, value in (
                ("--model", args.model),
                ("--onnx", args.onnx),
                ("--shape", args.shape),
                ("--input-data", args.input_data),
                ("--rows-per-request", args.rows_per_request != 1),
                ("--requests", args.requests),
            )
            if value
        ]
        if given:
            raise AxonError(
                f"{given[0]} does not go with --path: the path file names each call's model and rows"
                if given[0] != "--requests"
                else f"{given[0]} does not go with --path yet: a path's events run for a duration"
            )
        if args.engine == "native":
            raise AxonError(
                "--engine native can't keep a path's order (each step waits for the one before); a path runs on axon's event engine"
            )


def command(args: argparse.Namespace) -> int:
    # The measuring stack (onnxruntime, numpy, gRPC) only once options parse: a typo is said at once.
    from axon.case import prepare
    from axon.engines.payloads import resolve_artifacts

    _check_options(args)
    if args.hosts is not None and not args.dask:
        raise AxonError("--hosts places load on a Dask cluster: give --dask SCHEDULER_ADDRESS with it")
    # The load is checked and its engine chosen first, once, before anything is read or started
    # (with --dask, once the hosts are known, still before any server starts); the model's name
    # is settled below, from --model, --onnx or --path.
    specs = specs_from_args(args)
    if args.path is not None:  # the event engine runs every path: nothing to choose
        prepared = [SimpleNamespace(spec=spec.validate(), choice=SimpleNamespace(notice=None)) for spec in specs]
    else:
        prepared = (
            []
            if args.dask
            else [prepare(spec, has_metrics=not args.url or bool(args.metrics_url), tls=args.tls) for spec in specs]
        )
    if prepared and prepared[0].choice.notice:
        print(f"axon: notice: {prepared[0].choice.notice}", file=sys.stderr)
    artifacts = resolve_artifacts(args.artifacts)
    if artifacts is None and not args.url and args.onnx is None and args.path is None:
        raise AxonError(
            "no artifacts: run `axon train` first (it writes ./artifacts), or give --artifacts DIR, --onnx PATH for your own model, or --url for a running server"
        )
    from axon.engines.model_choice import resolve, resolve_path

    choice = resolve_path(args, artifacts) if args.path is not None else resolve(args, artifacts, args.rows_per_request)
    try:
        return _measure(args, choice, specs, prepared)
    finally:
        choice.close()


def _measure(args: argparse.Namespace, choice, specs: list[LoadSpec], prepared: list) -> int:
    from axon.case import Target, check_path_served, prepare, run_case, run_path
    from axon.offline.user_model import refuse_batching_modes

    args.model = choice.name
    refuse_batching_modes(choice.name, choice.batched, args.batching, args.ab)
    specs = [replace(spec, model=choice.name) for spec in specs]
    prepared = [
        SimpleNamespace(spec=replace(c.spec, model=choice.name), choice=c.choice)
        if isinstance(c, SimpleNamespace)
        else replace(c, spec=replace(c.spec, model=choice.name))
        for c in prepared
    ]
    artifacts, features, dataset, reference = choice.artifacts, choice.feed, choice.dataset, choice.reference
    # A model without a batch axis is served unbatched: its record says "off", as it is.
    modes = ["on", "off"] if args.ab else [args.batching or ("on" if choice.batched else "off")]
    servers = {
        mode: backends.make_server(
            "external" if args.url else args.backend or "embedded",
            batching=mode,
            models=None if args.url else (choice.models or [args.model]),
            artifacts=artifacts or Path("artifacts"),
            url=args.url,
            metrics_url=args.metrics_url,
            tls=args.tls,
            ca_file=args.ca_file,
            headers=dict(args.header),
        )
        for mode in modes
    }
    for server in servers.values():
        if hasattr(server, "check_models"):  # an unknown model is said now, not after a start
            server.check_models()
    # Checked before the load: a run must never be measured, then lost.
    writer = results.ResultsWriter(args.output or results.default_output(Path("results"), "bench"))
    runs: list[dict] = []
    exit_code = 0
    try:
        with interrupts.stop_once(), contextlib.ExitStack() as stack:
            hosts = None
            if args.dask:  # the scheduler, its workers and the split of the load, checked before any server starts
                from axon.engines.hosts.dask import DaskHosts, describe

                hosts = stack.enter_context(DaskHosts(args.dask, args.hosts))
                if choice.path is not None:  # every host runs the event engine: only the split of the load to check
                    from axon.engines.hosts.dask import check_spec

                    for case in prepared:
                        check_spec(case.spec, hosts.n, "events")
                else:
                    prepared = [
                        prepare(spec, has_metrics=not args.url or bool(args.metrics_url), tls=args.tls, hosts=hosts)
                        for spec in specs
                    ]
                for notice in [prepared[0].choice.notice, *hosts.notices()]:
                    if notice:
                        print(f"axon: notice: {notice}", file=sys.stderr)
            targets = {}
            for mode, server in servers.items():
                started = time.monotonic()
                if not args.url:  # a server axon starts takes seconds: say so, rather than sit silent
                    print(f"starting {server.backend} Triton (batching {mode})…", file=sys.stderr, flush=True)
                stack.enter_context(server)
                if not args.url:
                    print(
                        f"{server.backend} Triton {getattr(server, 'version', '') or ''} (batching {mode}) ready in {time.monotonic() - started:.1f} s",
                        file=sys.stderr,
                    )
                # An external server's mode is what the user stated (--batching), or unknown.
                targets[mode] = Target.of(server, args.batching if args.url else mode, args.max_server_memory)
                if choice.path is not None:
                    check_path_served(choice.path, targets[mode])  # every mode's, before any load
            # Interleaved: every repeat runs each mode once (ON, OFF, ON, OFF, ...), both servers
            # up, so drift over the minutes of a run hits both sides alike.
            for case in prepared:
                spec = case.spec
                for index in range(args.repeat):
                    for mode in modes:
                        target = targets[mode]
                        label = _label(spec, target.batching) + (f", repeat {index + 1}/{args.repeat}" if args.repeat > 1 else "")
                        progress = CaseProgress(label, spec.duration_s)
                        try:
                            repeat = (index, args.repeat) if args.repeat > 1 else None
                            if choice.path is not None:
                                run = run_path(
                                    choice.path,
                                    spec,
                                    target,
                                    features,
                                    reference,
                                    dataset,
                                    on_progress=progress,
                                    repeat=repeat,
                                    hosts=hosts,
                                )
                            else:
                                run = run_case(case, target, features, reference, dataset, on_progress=progress, repeat=repeat)
                        finally:
                            progress.close()
                        if hosts is not None:
                            print(describe(run), file=sys.stderr)
                        runs.append(run)
                        if len(runs) == 1:  # said once, after the model was found served (else its error is the one line)
                            for notice in choice.notices:
                                print(f"axon: notice: {notice}", file=sys.stderr)
                        # After every case: an interruption or a crash later keeps what was measured.
                        # A path that can't be written (gone, disk full) sends the record to a rescue path.
                        output = writer.save(runs)
                        status = (
                            _status(run)
                            if run["passed"]
                            else "FAILED: " + "; ".join(run["verdicts"] or [run["incomplete_reason"] or "?"])
                        )
                        print(
                            f"{label}: {_rps(run)} req/s, p50 {_ms(run['latency_ms']['p50'])} ms, p99 {_ms(run['latency_ms']['p99'])} ms  {status}",
                            file=sys.stderr,
                        )
                        if run["incomplete_reason"] == "interrupted":
                            raise KeyboardInterrupt
                        if not run["passed"]:
                            exit_code = 1
                        if run.get("server_metrics_missing") and (args.metrics_url or not args.url) and choice.path is None:
                            print(
                                f"axon: warning: no server metrics for this run: {run['server_metrics_missing']}", file=sys.stderr
                            )
                        if not run["complete"]:
                            raise AxonError(f"run incomplete ({run['incomplete_reason']}); partial result saved in {output}")
    finally:
        writer.discard()  # nothing measured (a server that never answered, say): no empty folder left
        if runs:
            print(table(runs))
            _print_repeat_summary(runs, args.ab)
            print(results.client_bound_summary(runs))
            print(f"results: {writer.path}")
    writer.finish()
    return exit_code


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="offer load to Triton and measure it (starts the embedded server unless --url)")
    add_model_options(p)
    p.add_argument(
        "--path",
        type=Path,
        metavar="FILE.toml",
        help="a trigger path: several models per event, steps in order (docs/paths.md); the event's latency is the run's",
    )
    load = p.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=positive_int, default=64, help="closed loop: requests in flight (default 64)")
    load.add_argument(
        "--rate", type=positive_float, help="open loop: requests per second, latency timed from intended send times"
    )
    load.add_argument("--sweep", type=concurrency_list, help="closed loop over several concurrencies, e.g. 1,4,16,64,128,256")
    p.add_argument("--poisson", action="store_true", help="open loop: Poisson arrivals (seeded) instead of constant spacing")
    p.add_argument(
        "--ab", action="store_true", help="run the same load against batching on and batching off (both servers up, interleaved)"
    )
    p.add_argument(
        "--engine",
        choices=engines.ENGINES,
        default="auto",
        help="load engine: native (h2load: closed loop and constant-rate open loop, checked against Triton's counters), python (grpc.aio: "
        "Poisson arrivals, varied payloads, sampled correctness), auto (default: native where h2load and metrics are available and the arrivals "
        "are not Poisson, else python, said in output and record)",
    )
    p.add_argument(
        "--connections",
        type=positive_int,
        help="native engine: spread the requests in flight (closed loop) over this many HTTP/2 connections (default 1, as one client process), "
        "or the rate (open loop) over this many h2load processes of one connection each (default: one per 10,000 req/s)",
    )
    p.add_argument(
        "--max-in-flight",
        type=positive_int,
        help="open loop: the most requests the client holds in flight, all processes and connections "
        "together; a request falling due past it is not sent and counts as CLIENT_OVERLOAD (default: python 20,000 per process; native: h2load streams for "
        "0.1 s of latency at the rate, 64-4,096 per connection)",
    )
    p.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        help="run each case this many times; tables show the median [min-max] (default 1)",
    )
    p.add_argument(
        "--batching",
        choices=("on", "off"),
        help="the server's dynamic batching: for a server axon starts, which repository it serves (default on); "
        "with --url, the mode that server runs, stated for the record (default: unknown, shown as ?)",
    )
    p.add_argument("--duration", type=positive_float, default=30.0, help="measurement window in seconds (default 30)")
    p.add_argument("--warmup", type=float, default=5.0, help="warm-up seconds before the window (default 5)")
    p.add_argument("--requests", type=positive_int, help="closed loop: measure this many requests instead of a duration")
    p.add_argument(
        "--rows-per-request",
        type=positive_int,
        default=1,
        help="rows (along the batch axis) of every input in each request (default 1; 1 for a model without a batch axis)",
    )
    p.add_argument(
        "--processes",
        type=processes,
        default="auto",
        help="worker processes, their histograms merged; auto (default): 1 on machines of up to 4 cores, else 1 per 4 cores, at most 4",
    )
    p.add_argument("--timeout", type=positive_float, default=10.0, help="client timeout per request in seconds (default 10)")
    p.add_argument(
        "--max-error-rate", type=fraction_of_one, default=0.0, help="fail the run above this error fraction (default 0)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the Poisson arrivals and of generated inputs (default 0)")
    p.add_argument("--output", type=Path, help="results JSON (default results/bench-<time>.json)")
    p.add_argument(
        "--artifacts",
        type=Path,
        help="output of `axon train`: rows, models, repositories (default ./artifacts; with --url and no artifacts, "
        "synthetic rows and no correctness check, said in output and record)",
    )
    p.add_argument(
        "--backend", choices=("embedded", "docker"), help="server axon starts when there is no --url (default embedded)"
    )
    p.add_argument("--url", help="an existing server: HOST:PORT of Triton's gRPC endpoint")
    p.add_argument("--metrics-url", help="with --url: Triton's metrics URL (default: none scraped)")
    p.add_argument(
        "--tls",
        action="store_true",
        help="with --url: gRPC over TLS, the server's certificate verified (python engine under auto)",
    )
    p.add_argument(
        "--ca-file", help="with --tls: PEM file of the CA that signed the server's certificate (default: the system's CAs)"
    )
    p.add_argument(
        "--header",
        type=header,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --url: extra gRPC header, e.g. a bearer token (repeatable)",
    )
    p.add_argument(
        "--dask",
        metavar="SCHEDULER_ADDRESS",
        help="offer the load from the workers of this Dask scheduler (one host each; docs/many-hosts.md)",
    )
    p.add_argument(
        "--hosts",
        type=positive_int,
        help="with --dask: how many workers offer load (default all); --processes then counts per host",
    )
    p.add_argument(
        "--on-unavailable",
        choices=loadgen.ON_UNAVAILABLE,
        default="stop",
        help="when the server (or the model) stops answering: stop the run, marked incomplete (default), or continue offering load, "
        "counting the failures, and resume when it is back (python engine)",
    )
    p.add_argument("--max-server-memory", type=memory_size, help=MAX_SERVER_MEMORY_HELP)
    p.add_argument(
        "--timeline",
        type=positive_float,
        metavar="SECONDS",
        help="also record throughput, errors and latency per slice of this many seconds of the window",
    )
    p.set_defaults(func=command)
