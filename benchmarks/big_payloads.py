"""A model whose every request carries ~1 MB: the payload pool within its byte bound, the check off the hot path.

Issue 27 asks two things of big requests, and this script shows both on one embedded Triton:

1. **The pool.** Distinct request bodies are bounded in count (1,024) and in bytes (256 MiB by
   default, ``axon.workload.requests``). At 1 MiB a request, bytes are the bound: the script
   builds the pool as a run does (:func:`axon.workload.feed.settle`, generated inputs), and
   prints its bytes against the bound, how many distinct bodies fit, the notice the run gives,
   the time to build, and this process's peak memory before and after.
2. **The check.** Answers are checked against onnxruntime, computed before the run; in the
   timed loop the python engine only compares one sampled answer in ``sample_every``, and the
   native engine checks one answer before its run. Each engine runs with the reference and
   without it, interleaved (ref, none, none, ref, ...), and the script prints the client CPU
   per request of each: the check is off the hot path when they agree within noise.

    python benchmarks/big_payloads.py [--mib 1] [--duration 2] [--rounds 3] [--concurrency 4]

Under two minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from axon.case import Target, run_case
from axon.engines.loadgen import LoadSpec
from axon.engines.payloads import MAX_DISTINCT_PAYLOADS
from axon.offline import user_model
from axon.serving.backends import embedded_repository
from axon.serving.embedded import EmbeddedServer
from axon.workload.feed import Feed, settle
from axon.workload.requests import DEFAULT_PAYLOAD_BYTES

ENGINES = ("python", "native")
ROW_WIDTH = 512  # FP32 elements in one row of the input; the rows per request set its size


def write_model(path: Path, mib: float) -> Path:
    """An ONNX model of one FP32 input [batch, rows, 512] (``mib`` MiB a request) and its per-row sums [batch, rows]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rows = max(1, round(mib * 2**20 / (4 * ROW_WIDTH)))
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axis"], ["y"], keepdims=0)],
        "big",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", rows, ROW_WIDTH])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", rows])],
        initializer=[numpy_helper.from_array(np.array([2], dtype=np.int64), "axis")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build_pool(model: user_model.UserModel, reference: Path | None) -> tuple[object, float]:
    """The run's pool, as run_case builds it for the python engine; and the seconds it took."""
    started = time.perf_counter()
    settled = settle(Feed(signature=model.signature), model.name, None, 1, MAX_DISTINCT_PAYLOADS, reference)
    return settled, time.perf_counter() - started


def show_pool(model: user_model.UserModel) -> None:
    before = peak_rss_mib()
    settled, seconds = build_pool(model, model.path)
    bodies = settled.payloads.bodies
    pool = sum(len(b) for b in bodies)
    print(
        f"pool: {len(bodies)} distinct bodies of {len(bodies[0]):,} bytes = {pool / 2**20:.1f} MiB, bound {DEFAULT_PAYLOAD_BYTES / 2**20:.0f} MiB "
        f"({'within' if pool <= DEFAULT_PAYLOAD_BYTES else 'OVER'}); count bound {MAX_DISTINCT_PAYLOADS}"
    )
    print(f"notice: {settled.notice}")
    tensors = sum(a.nbytes for r in settled.payloads.requests for a in r.values())
    answers = sum(a.nbytes for e in settled.expected for a in e.values())
    print(f"kept beside the bodies: input arrays {tensors / 2**20:.1f} MiB, reference answers {answers / 2**20:.2f} MiB")
    del settled, bodies  # the pool's memory back before the build without a reference
    _, unchecked_s = build_pool(model, None)
    print(
        f"built in {seconds:.2f} s with the onnxruntime reference, {unchecked_s:.2f} s without; this process's peak RSS {before:,.0f} -> {peak_rss_mib():,.0f} MiB"
    )


def bench(model: user_model.UserModel, root: Path, args: argparse.Namespace) -> None:
    engines = [e for e in args.engines.split(",") if e]
    runs: dict[tuple[str, bool], list[dict]] = {(e, checked): [] for e in engines for checked in (True, False)}
    with EmbeddedServer(embedded_repository(root, "on"), models=[model.name], log_path=root / "tritonserver.log") as server:
        target = Target(server.endpoints, "embedded", server.version, "on")
        for round_ in range(args.rounds):
            for engine in engines:
                # ABBA: which side goes first alternates, so an order effect hits both alike.
                for checked in (True, False) if round_ % 2 == 0 else (False, True):
                    spec = LoadSpec(
                        model.name, concurrency=args.concurrency, duration_s=args.duration, warmup_s=args.warmup, engine=engine
                    )
                    r = run_case(
                        spec, target, Feed(signature=model.signature), model.path if checked else None, {"name": "generated"}
                    )
                    if not r["complete"] or r["requests"]["ok"] == 0:
                        raise SystemExit(f"{engine} run failed: {r['verdicts']} {r['incomplete_reason']}")
                    runs[(engine, checked)].append(r)
    print(f"\nc={args.concurrency}, {args.duration:g} s windows, {args.rounds} interleaved rounds (median [min-max]):")
    print(f"{'engine':<7} {'reference':<10} {'req/s':>16} {'MB/s sent':>10} {'client CPU µs/request':>26} {'checked':>8}")
    for (engine, checked), rs in runs.items():
        rps = [r["throughput_rps"] for r in rs]
        cpu = [r["client"]["cpu_us_per_request"] for r in rs]
        sent_mb = statistics.median(rps) * r_bytes(rs[0]) / 1e6
        print(
            f"{engine:<7} {'onnxruntime' if checked else 'none':<10} {_spread(rps, '{:,.0f}'):>16} {sent_mb:>10,.0f} {_spread(cpu, '{:,.0f}'):>26} "
            f"{statistics.median(r['correctness'].get('checked', 0) for r in rs):>8,.0f}"
        )
    for engine in engines:
        with_ref = [r["client"]["cpu_us_per_request"] for r in runs[(engine, True)]]
        without = [r["client"]["cpu_us_per_request"] for r in runs[(engine, False)]]
        ratios = [a / b for a, b in zip(with_ref, without)]
        overlap = min(with_ref) <= max(without) and min(without) <= max(with_ref)
        print(
            f"{engine}: client CPU per request, with the reference / without: {statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]"
            f"{' (ranges overlap: within noise)' if overlap else ''}"
        )


def r_bytes(record: dict) -> int:
    return record["signature"]["bytes_per_request"]


def _spread(values: list[float], fmt: str) -> str:
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=float, default=1.0, help="MiB of input per request (default 1)")
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--engines", default=",".join(ENGINES), help="default python,native")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="axon-big-") as tmp:
        root = Path(tmp)
        (model,) = user_model.load([write_model(root / "big.onnx", args.mib)])
        print(f"model {model.name}: input x FP32 {list(model.signature.inputs[0].shape)} per row, {args.mib:g} MiB a request")
        show_pool(model)
        user_model.write_artifacts([model], root / "artifacts")
        bench(model, root / "artifacts", args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
