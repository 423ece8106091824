"""``axon`` command line: a thin shell over the library's functions.

User errors (:class:`axon.errors.AxonError`) print one line and exit with code 2; Ctrl-C exits
with 130 and SIGTERM with 143, each after whatever was running has cleaned up.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from axon.errors import EXIT_USAGE, AxonError

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, except where there is none to show (None, a flag's False, [])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from axon.offline import data, pipeline

    pipeline.check_rows(args.rows)  # before a download or an epoch is spent on too few rows
    dataset = data.load(args.dataset, rows=args.rows, seed=args.seed, progress=True)
    total_epochs = args.epochs * len(args.models)
    bars: list = []  # opened at the first epoch, so a dataset refused before training leaves one line

    def on_epoch(name: str, epoch: int, loss: float) -> None:
        if not bars:
            bars.append(tqdm(total=total_epochs, desc="training", unit="epoch", file=sys.stderr))
        bars[0].set_postfix_str(f"{name} loss {loss:.4f}")
        bars[0].update(1)

    try:
        built = pipeline.build(
            dataset,
            args.out,
            versions=args.models,
            epochs=args.epochs,
            seed=args.seed,
            gpu_repository=args.gpu_repository,
            on_epoch=on_epoch,
        )
    finally:
        for bar in bars:
            bar.close()
    info = dataset.info
    print(f"dataset: {info.name} ({info.rows} rows, seed {info.seed}, from {info.origin})")
    header = f"{'model':<24} {'params':>8} {'val AUC':>8} {'val acc':>8}  onnx"
    print(header)
    print("-" * len(header))
    for m in built:
        print(f"{m.name:<24} {m.parameters:>8} {m.val_auc:>8.4f} {m.val_accuracy:>8.4f}  {m.onnx_path}")
    print(f"repositories: {args.out / 'repositories'}" + (f" and {args.gpu_repository}" if args.gpu_repository else ""))
    return 0


def _model_versions(text: str) -> list[str]:
    from axon.names import ARCHITECTURES, MODEL_PREFIX

    versions = [v.strip().removeprefix(MODEL_PREFIX) for v in text.split(",") if v.strip()]
    unknown = [v for v in versions if v not in ARCHITECTURES]
    if not versions or unknown:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown or text!r}; known: {','.join(sorted(ARCHITECTURES))}")
    return versions


def _cmd_serve(args: argparse.Namespace) -> int:
    import contextlib
    import time

    import numpy as np

    from axon.names import model_name
    from axon.offline import export
    from axon.offline.pipeline import VALIDATION_ROWS_FILE
    from axon.serving import backends, client

    models = [model_name(v) for v in args.models]
    modes = ["on", "off"] if args.batching == "both" else [args.batching]
    if args.url:
        backends.check_url(args.url, "--url")
    if args.repository is not None and len(modes) > 1:
        raise AxonError("--repository names one repository; use --batching on or off with it")
    tls_files = None
    if args.tls_cert or args.tls_key or args.tls_ca:
        if not (args.tls_cert and args.tls_key):
            raise AxonError("gRPC over TLS needs both --tls-cert and --tls-key")
        if args.backend != "embedded":
            raise AxonError(f"--tls-cert/--tls-key start the embedded server with TLS; the {args.backend} backend was asked for")
        from axon.serving.embedded import TlsFiles

        tls_files = TlsFiles(args.tls_cert, args.tls_key, args.tls_ca)
        tls_files.check()  # before a server starts
    with contextlib.ExitStack() as stack:
        servers = []
        for mode in modes:
            server = backends.make_server(
                args.backend,
                batching=mode,
                models=models,
                artifacts=args.artifacts,
                repository=args.repository,
                url=args.url,
                metrics_url=args.metrics_url,
                tls=args.tls,
                headers=dict(args.header),
                log_path=args.log_dir / f"tritonserver-batching-{mode}.log" if args.log_dir else None,
                tls_files=tls_files,
            )
            started = time.monotonic()
            stack.enter_context(server)
            servers.append(server)
            ep = server.endpoints
            print(f"{server.backend} Triton {getattr(server, 'version', '') or ''} (batching {mode}) ready in {time.monotonic() - started:.1f} s")
            tls = f"  (TLS; clients verify with CA {ep.ca_file}: axon bench --url {ep.grpc} --tls --ca-file {ep.ca_file})" if ep.tls and ep.ca_file else "  (TLS)" if ep.tls else ""
            print(f"  grpc    {ep.grpc}{tls}\n  http    {ep.http or '-'}\n  metrics {ep.metrics or '-'}")
            if getattr(server, "log_path", None):
                kept = "" if args.log_dir else "  (removed at stop; --log-dir keeps it)"
                print(f"  log     {server.log_path}{kept}")
        if args.check:
            rows_file = args.artifacts / VALIDATION_ROWS_FILE
            if not rows_file.is_file():
                raise AxonError(f"--check needs validation rows from `axon train`: {rows_file} not found")
            with np.load(rows_file) as npz:
                row = npz["features"][:1]
            for server in servers:
                for name in models:
                    ep = server.endpoints
                    got = client.infer(ep.grpc, name, row, ssl=ep.tls, headers=ep.headers or None, ca_file=ep.ca_file)
                    line = f"check {name}: p(signal) = {float(got[0, 0]):.6f}"
                    onnx_path = args.artifacts / "models" / name / "model.onnx"
                    if onnx_path.is_file():
                        (ref,) = export.session(onnx_path).run([export.OUTPUT_NAME], {export.INPUT_NAME: row})
                        diff = float(np.max(np.abs(got - ref)))
                        if diff > 1e-6:
                            raise AxonError(f"{name}: server answer differs from local onnxruntime by {diff:.3g}")
                        line += f", local onnxruntime agrees (|diff| = {diff:.1e})"
                    print(line)
            return 0
        print("serving; press Ctrl-C to stop", flush=True)
        while True:
            time.sleep(3600)


def _cmd_compare(args: argparse.Namespace) -> int:
    from axon.cli import compare
    from axon.verdicts import gate, history

    threshold = compare.fraction(args.threshold, "threshold", gate.DEFAULT_THRESHOLD)
    if args.storage:
        if args.files:
            raise AxonError("give either OLD NEW or --storage, not both")
        alpha = compare.fraction(args.alpha, "alpha", history.DEFAULT_ALPHA)
        return compare.history_gate(args.storage, args.metric, threshold, alpha, args.strict, args.json, args.plot_dir)
    if len(args.files) != 2:
        raise AxonError("give two result files or folders (OLD NEW), or --storage DIR")
    if args.plot_dir:
        raise AxonError("--plot-dir draws histories: use it with --storage")
    alpha = compare.fraction(args.alpha, "alpha", gate.DEFAULT_ALPHA)
    return compare.two_sample([args.files[0]], [args.files[1]], args.metric, threshold, alpha, args.strict, args.json, args.single_run_fails)


def _cmd_study(args: argparse.Namespace) -> int:
    from axon.study import plan as study
    from axon.study import report

    plan = study.StudyPlan(
        sweep=tuple(args.sweep),
        duration_s=args.duration,
        warmup_s=args.warmup,
        capacity_start_rps=args.capacity_start,
        repeat=args.repeat,
        engine=args.engine,
    )
    plan = study.plan_with_budgets(plan, args.pyproject)
    from axon import engines

    choice = engines.choose(args.engine, "closed", has_metrics=True)  # said now, before any server starts
    if choice.notice:
        print(f"axon: notice: {choice.notice}", file=sys.stderr)
    from axon.engines.payloads import resolve_artifacts
    from axon.offline.pipeline import ensure_writable

    resolve_artifacts(args.artifacts)  # a missing folder is said now, before the output folder is made
    ensure_writable(args.out)
    print(f"study: {len(plan.sweep)}-point sweep x 2 batching modes, models at c={plan.compare_at}, capacity search; {plan.repeat} interleaved repeats; "
          f"{plan.warmup_s:g} s warm-up + {plan.duration_s:g} s per case; budgets p50 {plan.p50_budget_ms:g} ms, p99 {plan.p99_budget_ms:g} ms ({plan.budgets_from})")
    runs = study.Study(args.artifacts, args.out, plan).run()
    path = report.write_report(args.out)
    from axon.records.results import client_bound_summary

    print(client_bound_summary(runs))
    print(f"study: {len(runs)} runs in {args.out / study.STUDY_FILE}; report {path}")
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from axon.records import merge, results

    runs = merge.merge_files(args.files)
    results.check_writable(args.output)
    results.write_results(args.output, runs)
    for r in runs:
        lat = r["latency_ms"]
        print(
            f"{merge.case_key(r)}: {r['merged']['from']} runs ({', '.join(r['merged']['hosts'])}) -> "
            f"{r['throughput_rps']:,.0f} req/s, p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, {r['requests']['ok']:,} ok"
        )
    print(f"merged: {args.output}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from axon.study import report

    path = report.write_report(args.path, args.out)
    print(path.read_text())
    print(f"report: {path} (plots beside it)")
    return 0


def _header(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    from axon import version

    parser = argparse.ArgumentParser(prog="axon", description="Measure ML inference served by NVIDIA Triton.")
    parser.add_argument("--version", action="version", version=f"axon {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train v1 and v2, export to ONNX, write the model repositories", formatter_class=_HelpFormatter)
    p.add_argument("--dataset", default="synthetic", help="synthetic (offline), higgs (UCI download), or a path/URL to HIGGS.csv[.gz]")
    p.add_argument("--rows", type=positive_int, default=100_000, help="rows to read or generate")
    p.add_argument("--seed", type=int, default=0, help="seed of the data generator, the split, the weights and the shuffling")
    p.add_argument("--epochs", type=positive_int, default=8, help="training epochs per model")
    # A string default goes through type=, so --help shows it as a user would type it.
    p.add_argument("--models", type=_model_versions, default="v1,v2", help="comma-separated versions")
    p.add_argument("--out", type=Path, default=Path("artifacts"), help="output directory: models, repositories, validation rows")
    p.add_argument(
        "--gpu-repository",
        type=Path,
        help="also write the GPU-container repository here (docker-compose.yml mounts model_repository); "
        "by default nothing is written outside --out",
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("serve", help="start Triton (embedded by default), print its endpoints, keep it up until Ctrl-C", formatter_class=_HelpFormatter)
    p.add_argument("--backend", choices=("embedded", "docker", "external"), default="embedded", help="which Triton: a child process, the GPU container, or one already running")
    p.add_argument("--batching", choices=("on", "off", "both"), default="on", help="dynamic batching of the served repository; both starts two servers")
    p.add_argument("--models", type=_model_versions, default="v1,v2", help="comma-separated versions")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="output of `axon train`")
    p.add_argument("--repository", type=Path, help="serve this embedded repository instead of the one under --artifacts (default: that one)")
    p.add_argument("--url", help="external backend: HOST:PORT of Triton's gRPC endpoint")
    p.add_argument("--metrics-url", help="external backend: Triton's Prometheus metrics URL")
    p.add_argument("--tls", action="store_true", help="external backend: gRPC over TLS")
    p.add_argument("--header", type=_header, action="append", default=[], metavar="KEY=VALUE", help="external backend: extra gRPC header (repeatable)")
    p.add_argument("--log-dir", type=Path, help="keep the embedded server log here (default: a temporary folder, removed at stop)")
    p.add_argument("--tls-cert", type=Path, help="embedded backend: serve gRPC over TLS with this PEM certificate (Triton's --grpc-use-ssl)")
    p.add_argument("--tls-key", type=Path, help="embedded backend: the certificate's PEM private key")
    p.add_argument("--tls-ca", type=Path, help="embedded backend: PEM of the CA that signed the certificate (Triton's --grpc-root-cert); default: the certificate is self-signed")
    p.add_argument("--check", action="store_true", help="send one real request per model, compare with local onnxruntime, then stop")
    p.set_defaults(func=_cmd_serve)

    from axon.cli import bench

    bench.add_parser(sub, positive_int, positive_float, _header)

    from axon.cli import direct

    direct.add_parser(sub, positive_float)

    from axon.cli import tune as tune_command

    tune_command.add_parser(sub, positive_int, positive_float)

    p = sub.add_parser(
        "compare",
        help="regression gate: OLD vs NEW on run-level values, or the newest run vs its history (--storage); exit 1 on a real regression",
    )
    p.add_argument("files", nargs="*", type=Path, metavar="OLD NEW", help="two results files or folders of them (pytest-benchmark or axon JSON)")
    p.add_argument("--storage", type=Path, help="judge the newest run of each case against every run saved here (e.g. .benchmarks)")
    p.add_argument("--metric", choices=("p50_ms", "p99_ms", "mean_ms", "throughput_rps"), default="p50_ms", help="run-level value to judge (default p50_ms)")
    p.add_argument("--threshold", help="relative change that matters, between 0 and 1 (default 0.10)")
    p.add_argument("--alpha", help="significance level across runs (default 0.01 for OLD NEW, 0.05 for --storage change points)")
    p.add_argument("--strict", action="store_true", help="a different machine, engine, dataset, server or axon version is an error, not a warning")
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    p.add_argument("--plot-dir", type=Path, help="with --storage: one PNG per case's history here")
    p.add_argument("--single-run-fails", action="store_true", help="with 1 run per side, fail on the threshold alone")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("study", help="the whole study on the embedded server: sweep, A/B, models, capacity; then the report")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="output of `axon train` (default artifacts)")
    p.add_argument("--out", type=Path, default=Path("results"), help="where study.json, report.md and the plots go (default results)")
    p.add_argument("--duration", type=positive_float, default=3.0, help="measurement window per case in seconds (default 3)")
    p.add_argument("--repeat", type=positive_int, default=3, help="runs per case, interleaved ON/OFF; tables show median [min-max] (default 3)")
    p.add_argument("--engine", choices=("auto", "native", "python"), default="auto", help="closed-loop engine (default auto: native where h2load is found); open loop is python")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up per case in seconds (default 1)")
    p.add_argument("--sweep", type=bench._concurrency_list, default=[1, 4, 16, 64, 128, 256], help="concurrencies (default 1,4,16,64,128,256)")
    p.add_argument("--capacity-start", type=positive_float, default=500.0, help="first offered rate of the capacity search (default 500/s)")
    p.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"), help="where the [[tool.axon.slo]] budgets are")
    p.set_defaults(func=_cmd_study)

    p = sub.add_parser("merge", help="merge runs of the same cases measured side by side on several hosts (exact, through the histograms)", formatter_class=_HelpFormatter)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="results files, one per host, holding the same cases")
    p.add_argument("--output", type=Path, required=True, help="the merged results file")
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser("report", help="tables and plots from a study's folder or any axon results file (bench, sweep, A/B, merged)", formatter_class=_HelpFormatter)
    p.add_argument("path", type=Path, nargs="?", default=Path("results"), help="the folder `axon study --out` wrote, or a results JSON file")
    p.add_argument("--out", type=Path, help="where report.md and the plots go (default: the study folder, or <file name>-report/ beside a file)")
    p.set_defaults(func=_cmd_report)
    return parser


class _Termination:
    """SIGTERM taken the way Ctrl-C is: as KeyboardInterrupt, so every ``with`` and ``finally``
    (servers stopped, temporary folders removed, partial results saved) runs, as it does not
    when Python dies of the default SIGTERM action.
    """

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum, frame) -> None:
        if self.received:
            return  # a second SIGTERM must not interrupt the cleanup the first one started
        self.received = True
        raise KeyboardInterrupt

    def install(self):
        try:
            return signal.signal(signal.SIGTERM, self)
        except ValueError:  # not the main thread (main() called from a test's thread): leave it
            return None


def main(argv: Sequence[str] | None = None) -> int:
    import os

    # gRPC's C core logs at INFO on some failures (a TLS handshake, say) over axon's own one-line
    # message; only its errors are shown unless the user asks for more.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    parser = build_parser()
    args = parser.parse_args(argv)
    termination = _Termination()
    previous = termination.install()
    try:
        return args.func(args)
    except AxonError as exc:
        print(f"axon: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if termination.received:
            print("axon: terminated", file=sys.stderr)
            return EXIT_TERMINATED
        print("axon: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
