"""``axon serve``: start Triton (or reach one), print its endpoints, keep it up until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path

from axon.cli.args import HelpFormatter, add_queue_options, header, model_versions
from axon.cli.model_args import shape_option
from axon.errors import AxonError


def command(args: argparse.Namespace) -> int:
    import contextlib
    import time

    import numpy as np

    from axon.names import model_name
    from axon.offline import export
    from axon.offline.pipeline import VALIDATION_ROWS_FILE
    from axon.serving import backends, client

    modes = ["on", "off"] if args.batching == "both" else [args.batching]
    # The user's own models: read now (a bad file is one line before any server), served beside
    # the trained ones named by --models (by default, alone).
    user = _user_models(args, modes)
    models = [model_name(v) for v in (args.models or ([] if user else ["v1", "v2"]))]
    if args.url:
        backends.check_url(args.url, "--url")
    if args.metrics_url:
        backends.check_metrics_url(args.metrics_url, "--metrics-url")
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
    queued = bool(args.max_queue_size or args.queue_timeout_us)
    if queued and (args.backend != "embedded" or "off" in modes):
        raise AxonError(
            "--max-queue-size and --queue-timeout-us set the dynamic batcher's queue policy of the embedded server: "
            "use them with --backend embedded --batching on (or write it with `axon train --max-queue-size`)"
        )
    with contextlib.ExitStack() as stack:
        if user:
            args.artifacts = _user_artifacts(args, user, models, stack)
            models += [m.name for m in user]
        servers = []
        for mode in modes:
            repository = args.repository
            if queued:  # a copy with the policy, in a folder removed at stop: the artifacts stay as trained
                import tempfile

                from axon.offline.repository import with_queue_policy

                source = args.repository or backends.embedded_repository(args.artifacts, mode)
                if not source.is_dir():
                    raise AxonError(f"model repository not found: {source} (run `axon train` first)")
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="axon-queue-")))
                repository = with_queue_policy(source, folder / "repository", args.max_queue_size, args.queue_timeout_us)
                print(
                    f"queue policy: at most {args.max_queue_size or 'unbounded'} queued, timeout {args.queue_timeout_us or 'none'} µs, then rejected"
                )
            server = backends.make_server(
                args.backend,
                batching=mode,
                models=models,
                artifacts=args.artifacts,
                repository=repository,
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
            print(
                f"{server.backend} Triton {getattr(server, 'version', '') or ''} (batching {mode}) ready in {time.monotonic() - started:.1f} s"
            )
            tls = (
                f"  (TLS; clients verify with CA {ep.ca_file}: axon bench --url {ep.grpc} --tls --ca-file {ep.ca_file})"
                if ep.tls and ep.ca_file
                else "  (TLS)"
                if ep.tls
                else ""
            )
            print(f"  grpc    {ep.grpc}{tls}\n  http    {ep.http or '-'}\n  metrics {ep.metrics or '-'}")
            if getattr(server, "log_path", None):
                kept = "" if args.log_dir else "  (removed at stop; --log-dir keeps it)"
                print(f"  log     {server.log_path}{kept}")
        if args.check:
            _check_user_models(servers, user, dict(args.shape))
            models = [m for m in models if m not in {u.name for u in user}]
        if args.check and models:
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
        if args.check:
            return 0
        print("serving; press Ctrl-C to stop", flush=True)
        watch(servers, modes)
        return 0  # not reached: watch() returns only by an exception


def _user_models(args: argparse.Namespace, modes: list[str]) -> list:
    if not args.onnx:
        return []
    from axon.offline import user_model

    if args.backend == "external":
        raise AxonError(
            "--onnx serves your model from a repository axon writes: use the embedded or docker backend (with --url, bench it: axon bench --url ... --model NAME)"
        )
    if args.repository is not None:
        raise AxonError("--onnx and --repository both say what to serve: give one of them")
    user = user_model.load(args.onnx)
    for m in user:
        m.signature.check_supported(f"--onnx {m.path}")
        if not m.signature.batched and args.batching != "on":
            user_model.refuse_batching_modes(m.name, False, args.batching, False)
    return user


def _user_artifacts(args: argparse.Namespace, user: list, trained: list[str], stack) -> Path:
    """A folder in `axon train`'s layout holding the user's models and the trained ones asked for, removed at stop."""
    import tempfile

    from axon.offline import user_model

    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="axon-onnx-")))
    user_model.write_artifacts(user, root)
    return user_model.with_trained(root, args.artifacts, trained)


def _check_user_models(servers: list, user: list, shapes: dict) -> None:
    """One generated request per user model, its every output compared with onnxruntime on the same file."""
    from axon.engines.h2load_runner import precheck
    from axon.workload.feed import Feed, settle

    for server in servers:
        for m in user:
            settled = settle(Feed(signature=m.signature, shapes=shapes), m.name, server.endpoints, 1, 1, m.path)
            precheck(server.endpoints, settled.payloads.bodies[0], settled.expected[0], 10.0)
            outputs = ", ".join(f"{t.name} {t.datatype}" for t in m.signature.outputs)
            print(f"check {m.name}: generated inputs answered ({outputs}); local onnxruntime agrees on every output")


# How often `axon serve` looks at its servers. Short, so a death is said within a second, and
# so Ctrl-C is taken at once: Python runs signal handlers in the main thread between bytecodes,
# and a long sleep there would hold a SIGINT that the kernel handed to another thread.
WATCH_INTERVAL_S = 0.2


def watch(servers: list, modes: list[str]) -> None:
    """Until Ctrl-C: a server axon started that dies is said in one line with its log's tail, exit 2."""
    import sys
    import time

    from axon.errors import ServerDied

    while True:
        for server, mode in zip(servers, modes):
            death = server.death()
            if death is not None:
                kept = server.keep_log() if hasattr(server, "keep_log") else None  # out of the folder stop() removes
                tail = server.log_tail() if hasattr(server, "log_tail") else ""
                log = f" (whole log: {kept})" if kept else ""
                message = f"{server.backend} Triton (batching {mode}) died: {death}{log}" + (
                    f"\n--- last lines of its log ---\n{tail}" if tail else ""
                )
                print(f"axon: error: {message}", file=sys.stderr, flush=True)
                raise ServerDied(message)
        time.sleep(WATCH_INTERVAL_S)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="start Triton (embedded by default), print its endpoints, keep it up until Ctrl-C",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--backend",
        choices=("embedded", "docker", "external"),
        default="embedded",
        help="which Triton: a child process, the GPU container, or one already running",
    )
    p.add_argument(
        "--batching",
        choices=("on", "off", "both"),
        default="on",
        help="dynamic batching of the served repository; both starts two servers",
    )
    p.add_argument(
        "--models",
        type=model_versions,
        help="comma-separated versions of axon's trained models; with --onnx, none unless named (default: v1,v2)",
    )
    p.add_argument(
        "--onnx",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="also serve your own ONNX model (repeatable): axon writes its repository with the same knobs; its name is the file's stem",
    )
    p.add_argument(
        "--shape",
        type=shape_option,
        action="append",
        default=[],
        metavar="NAME:d1,d2",
        help="with --check: an --onnx input's open dimensions, batch axis excluded (repeatable)",
    )
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="output of `axon train`")
    p.add_argument(
        "--repository", type=Path, help="serve this embedded repository instead of the one under --artifacts (default: that one)"
    )
    p.add_argument("--url", help="external backend: HOST:PORT of Triton's gRPC endpoint")
    p.add_argument("--metrics-url", help="external backend: Triton's Prometheus metrics URL")
    p.add_argument("--tls", action="store_true", help="external backend: gRPC over TLS")
    p.add_argument(
        "--header",
        type=header,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="external backend: extra gRPC header (repeatable)",
    )
    p.add_argument(
        "--log-dir", type=Path, help="keep the embedded server log here (default: a temporary folder, removed at stop)"
    )
    p.add_argument(
        "--tls-cert", type=Path, help="embedded backend: serve gRPC over TLS with this PEM certificate (Triton's --grpc-use-ssl)"
    )
    p.add_argument("--tls-key", type=Path, help="embedded backend: the certificate's PEM private key")
    p.add_argument(
        "--tls-ca",
        type=Path,
        help="embedded backend: PEM of the CA that signed the certificate (Triton's --grpc-root-cert); default: the certificate is self-signed",
    )
    p.add_argument(
        "--check", action="store_true", help="send one real request per model, compare with local onnxruntime, then stop"
    )
    add_queue_options(p)
    p.set_defaults(func=command)
