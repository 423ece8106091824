"""`axon bench`: cases (sweeps, A/B) over a server axon starts or one it is pointed at."""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import replace
from pathlib import Path

from axon import backends, engines, interrupts, loadgen, repeats, results
from axon.bench import Target, run_case
from axon.engines import native
from axon.errors import AxonError
from axon.loadgen import LoadSpec
from axon.names import served_name
from axon.payloads import load_rows
from axon.progress import CaseProgress


def _label(spec: LoadSpec, batching: str | None) -> str:
    load = f"c={spec.concurrency}" if spec.mode == "closed" else f"rate={spec.rate:g}/s {spec.distribution}"
    return f"{spec.model}, batching {batching or '?'}, {load}"


def table(runs: list[dict]) -> str:
    head = f"{'model':<24} {'batch':>5} {'load':>16} {'engine':>6} {'rep':>3} {'req/s':>9} {'p50':>7} {'p95':>7} {'p99':>7} {'err':>5} {'avg bs':>6} {'cpu':>5}  verdict"
    lines = [head, "-" * len(head)]
    for r in runs:
        load = f"c={r['load']['concurrency']}" if r["load"]["mode"] == "closed" else f"{r['load']['rate']:g}/s {r['load']['distribution'][:4]}"
        lat = r["latency_ms"]
        sm = r.get("server_metrics") or {}
        bs = sm.get("avg_batch_size")
        cpu = max(r["client"]["cores_per_process"], default=float("nan"))
        engine = (r.get("engine") or {}).get("name", "?")
        rep = str(r["repeat"]["index"] + 1) if r.get("repeat") else "-"
        verdict = "ok" if r["passed"] else "; ".join(r["verdicts"] + ([r["incomplete_reason"]] if r["incomplete_reason"] else []))
        if r["client"]["client_bound"]:
            verdict += " [client-bound]"
        lines.append(
            f"{r['model']:<24} {r['batching'] or '?':>5} {load:>16} {engine:>6} {rep:>3} {r['throughput_rps']:>9,.0f} {lat['p50']:>7.2f} {lat['p95']:>7.2f} "
            f"{lat['p99']:>7.2f} {r['requests']['failed']:>5} {bs if bs is None else round(bs, 1)!s:>6} {cpu:>5.2f}  {verdict}"
        )
    return "\n".join(lines) + "\n(latencies in ms; cpu = client cores per worker process, or per h2load thread for the native engine)"


def specs_from_args(args: argparse.Namespace) -> list[LoadSpec]:
    base = LoadSpec(
        model=args.model,
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
        concurrency=1,  # replaced below
    )
    if args.rate is not None:
        specs = [replace(base, concurrency=None, connections=None, rate=args.rate, distribution="poisson" if args.poisson else "constant")]
    elif args.sweep:
        specs = [replace(base, concurrency=c) for c in args.sweep]
    else:
        specs = [replace(base, concurrency=args.concurrency)]
    for spec in specs:
        spec.validate()
    return specs


def _print_repeat_summary(runs: list[dict], ab: bool) -> None:
    """Median [min–max] per case over its repeats; with --ab, ON/OFF per case or "within noise"."""
    groups = repeats.group(runs)
    if all(len(g) == 1 for g in groups.values()):
        return
    print("\nover repeats: median [min–max]")
    for key, group in groups.items():
        s = repeats.summarise(group)
        print(f"  {key}: {s['throughput_rps'].format()} req/s, p50 {s['p50_ms'].format('.2f')} ms, p99 {s['p99_ms'].format('.2f')} ms ({len(group)} runs)")
    if ab:
        by_mode = {mode: [r for r in runs if r["batching"] == mode] for mode in ("on", "off")}
        for key in dict.fromkeys(repeats.case_key({**r, "batching": None}) for r in runs):
            on = [r for r in by_mode["on"] if repeats.case_key({**r, "batching": None}) == key]
            off = [r for r in by_mode["off"] if repeats.case_key({**r, "batching": None}) == key]
            if on and off:
                print(f"  ON/OFF {key.replace('batching ?, ', '')}: throughput {repeats.ratio(on, off).format()}, p50 {repeats.ratio(on, off, 'p50_ms').format()}")


def command(args: argparse.Namespace) -> int:
    args.model = served_name(args.model)
    specs = specs_from_args(args)
    if args.url and args.ab:
        raise AxonError("--ab compares batching on and off on servers axon starts; it can't be used with --url")
    if args.poisson and args.rate is None:
        raise AxonError("--poisson shapes open-loop arrivals: give --rate with it")
    if (args.tls or args.ca_file) and not args.url:
        raise AxonError("--tls and --ca-file talk to a server given by --url (axon serve --tls-cert/--tls-key starts one)")
    if args.ca_file and not args.tls:
        raise AxonError("--ca-file is the CA that verifies a TLS server: give --tls with it")
    # Engine problems are said now, before any server starts or any load is offered.
    choice = engines.choose(args.engine, specs[0].mode, has_metrics=not args.url or bool(args.metrics_url), tls=args.tls, on_unavailable=args.on_unavailable)
    if choice.notice:
        print(f"axon: notice: {choice.notice}", file=sys.stderr)
    if args.connections is not None and choice.name != "native":
        raise AxonError("--connections shapes the native engine's load; this case runs on the python engine")
    for spec in specs:
        if choice.name == "native":
            native.topology(spec.concurrency, args.connections)
    modes = ["on", "off"] if args.ab else [args.batching]
    features, dataset = load_rows(args.artifacts, args.seed)
    reference = args.artifacts / "models" / args.model / "model.onnx"
    output = args.output or results.default_output(Path("results"), "bench")
    # Said now, not after minutes of load (the record would still be rescued, see below).
    ensure_writable_file(output)
    runs: list[dict] = []
    exit_code = 0
    requested_output, write_problem = output, None
    try:
        with interrupts.stop_once(), contextlib.ExitStack() as stack:
            targets = {}
            for mode in modes:
                server = backends.make_server(
                    "external" if args.url else args.backend,
                    batching=mode,
                    models=None if args.url else [args.model],
                    artifacts=args.artifacts,
                    url=args.url,
                    metrics_url=args.metrics_url,
                    tls=args.tls,
                    ca_file=args.ca_file,
                    headers=dict(args.header),
                )
                stack.enter_context(server)
                targets[mode] = Target(server.endpoints, server.backend, getattr(server, "version", None), None if args.url else mode)
            # Interleaved: every repeat runs each mode once (ON, OFF, ON, OFF, ...), both servers
            # up, so drift over the minutes of a run hits both sides alike.
            for spec in specs:
                for index in range(args.repeat):
                    for mode in modes:
                        target = targets[mode]
                        label = _label(spec, target.batching) + (f", repeat {index + 1}/{args.repeat}" if args.repeat > 1 else "")
                        progress = CaseProgress(label, spec.duration_s)
                        try:
                            run = run_case(spec, target, features, reference, dataset, on_progress=progress, repeat=(index, args.repeat) if args.repeat > 1 else None)
                        finally:
                            progress.close()
                        runs.append(run)
                        # After every case: an interruption or a crash later keeps what was measured.
                        # A path that can't be written (gone, disk full) sends the record to a rescue path.
                        output, problem = results.save_results(output, runs)
                        if problem and write_problem is None:
                            write_problem = problem
                            print(f"axon: cannot write results to {requested_output} ({problem}); saved to {output} instead", file=sys.stderr, flush=True)
                        status = "ok" if run["passed"] else "FAILED: " + "; ".join(run["verdicts"] or [run["incomplete_reason"] or "?"])
                        print(f"{label}: {run['throughput_rps']:,.0f} req/s, p50 {run['latency_ms']['p50']:.2f} ms, p99 {run['latency_ms']['p99']:.2f} ms  {status}", file=sys.stderr)
                        if run["incomplete_reason"] == "interrupted":
                            raise KeyboardInterrupt
                        if not run["passed"]:
                            exit_code = 1
                        if run.get("server_metrics_missing") and (args.metrics_url or not args.url):
                            print(f"axon: warning: no server metrics for this run: {run['server_metrics_missing']}", file=sys.stderr)
                        if not run["complete"]:
                            raise AxonError(f"run incomplete ({run['incomplete_reason']}); partial result saved in {output}")
    finally:
        if runs:
            print(table(runs))
            _print_repeat_summary(runs, args.ab)
            print(f"results: {output}")
    if write_problem:
        raise AxonError(f"cannot write results to {requested_output} ({write_problem}); nothing was lost: every run is in {output}")
    return exit_code


def ensure_writable_file(path: Path) -> None:
    """Fail before any load when the results file can't be written; create nothing.

    The nearest folder that exists on the way to ``path`` must take a file (a probe, removed
    at once); folders still missing are made when the results are written.
    """
    import tempfile

    if path.is_dir():
        raise AxonError(f"--output {path} is a folder; give a file name, e.g. {path / 'bench.json'}")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise AxonError(f"--output {path} is not writable: {existing} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".axon-probe-"):
            pass
    except OSError as exc:
        raise AxonError(f"--output {path} is not writable: {exc.strerror or exc} ({existing})") from None


def _concurrency_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or any(not 1 <= v <= 1024 for v in values):
        raise argparse.ArgumentTypeError(f"concurrencies must be between 1 and 1024, got {text!r}")
    return values


def _processes(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_parser(sub, positive_int, positive_float, header) -> None:
    p = sub.add_parser("bench", help="offer load to Triton and measure it (starts the embedded server unless --url)")
    p.add_argument("--model", default="particle_classifier_v1", help="model name, or v1/v2 (default particle_classifier_v1)")
    load = p.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=positive_int, default=64, help="closed loop: requests in flight (default 64)")
    load.add_argument("--rate", type=positive_float, help="open loop: requests per second, latency timed from intended send times")
    load.add_argument("--sweep", type=_concurrency_list, help="closed loop over several concurrencies, e.g. 1,4,16,64,128,256")
    p.add_argument("--poisson", action="store_true", help="open loop: Poisson arrivals (seeded) instead of constant spacing")
    p.add_argument("--ab", action="store_true", help="run the same load against batching on and batching off (both servers up, interleaved)")
    p.add_argument(
        "--engine",
        choices=engines.ENGINES,
        default="auto",
        help="load engine: native (h2load, closed loop, checked against Triton's counters), python (grpc.aio: open loop, varied payloads, "
        "sampled correctness), auto (default: native for closed loop where h2load and metrics are available, else python, said in output and record)",
    )
    p.add_argument("--connections", type=positive_int, help="native engine: spread the requests in flight over this many HTTP/2 connections (default 1, as one client process)")
    p.add_argument("--repeat", type=positive_int, default=1, help="run each case this many times; tables show the median [min-max] (default 1)")
    p.add_argument("--batching", choices=("on", "off"), default="on", help="which embedded/docker repository to serve (default on)")
    p.add_argument("--duration", type=positive_float, default=30.0, help="measurement window in seconds (default 30)")
    p.add_argument("--warmup", type=float, default=5.0, help="warm-up seconds before the window (default 5)")
    p.add_argument("--requests", type=positive_int, help="closed loop: measure this many requests instead of a duration")
    p.add_argument("--rows-per-request", type=positive_int, default=1)
    p.add_argument(
        "--processes",
        type=_processes,
        default="auto",
        help="worker processes, their histograms merged; auto (default): 1 on machines of up to 4 cores, else 1 per 4 cores, at most 4",
    )
    p.add_argument("--timeout", type=positive_float, default=10.0, help="client timeout per request in seconds (default 10)")
    p.add_argument("--max-error-rate", type=float, default=0.0, help="fail the run above this error fraction (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, help="results JSON (default results/bench-<time>.json)")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="output of `axon train`: rows, models, repositories")
    p.add_argument("--backend", choices=("embedded", "docker"), default="embedded", help="server axon starts when there is no --url")
    p.add_argument("--url", help="an existing server: HOST:PORT of Triton's gRPC endpoint")
    p.add_argument("--metrics-url", help="with --url: Triton's metrics URL (default: none scraped)")
    p.add_argument("--tls", action="store_true", help="with --url: gRPC over TLS, the server's certificate verified (python engine under auto)")
    p.add_argument("--ca-file", help="with --tls: PEM file of the CA that signed the server's certificate (default: the system's CAs)")
    p.add_argument("--header", type=header, action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--on-unavailable",
        choices=loadgen.ON_UNAVAILABLE,
        default="stop",
        help="when the server (or the model) stops answering: stop the run, marked incomplete (default), or continue offering load, "
        "counting the failures, and resume when it is back (python engine)",
    )
    p.add_argument("--timeline", type=positive_float, metavar="SECONDS", help="also record throughput, errors and latency per slice of this many seconds of the window")
    p.set_defaults(func=command)


