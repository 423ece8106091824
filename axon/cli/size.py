"""``axon size``: how many trigger clients one server carries within the budget, and how many servers a farm needs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from axon.cli.args import HelpFormatter, positive_float, positive_int
from axon.errors import AxonError

EXIT_NOT_CONFIRMED = 1
MODES = ("on", "off")


def _non_negative_ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of milliseconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _headroom(text: str) -> float:
    """A percentage in [0, 100): 100% would keep the whole server back."""
    try:
        value = float(text.removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}") from None
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"must be at least 0% and under 100%, got {text}")
    return value


def _subject(args, runs: list[dict] | None) -> list[str]:
    """The subjects sized: --model/--onnx/--path's, else every one the results measured."""
    from axon.names import served_name

    if args.path is not None:
        from axon.workload.path import load

        args.trigger = load(args.path, served_name)
        return [f"path:{args.trigger.name}"]
    if args.onnx is not None:
        from axon.offline import user_model

        (model,) = user_model.load([args.onnx], [])
        return [model.name]
    if args.model:
        return [served_name(m) for m in args.model]
    from axon.study.sizing.measured import subjects

    if runs is None:
        raise AxonError(
            "give RESULTS (a study folder or results file with a capacity measurement), or --model, --onnx or --path to measure one on the spot"
        )
    found = subjects(runs)
    if not found:
        raise AxonError(
            f"{args.results}: no capacity measurement in it (no open-loop run); run `axon study`, or `axon size --model NAME` to measure one on the spot"
        )
    return found


def _choice(args, subject: str, artifacts):
    """What a verify or an on-the-spot measurement serves and sends: a model is a one-call path."""
    from axon.engines.model_choice import resolve_trigger
    from axon.workload.path import Call, Step, TriggerPath

    if args.path is not None:
        return resolve_trigger(args.trigger, artifacts, args.url)
    call = Call(subject, 1, args.onnx)
    choice = resolve_trigger(TriggerPath(subject, (Step((call,)),), args.onnx or Path(subject)), artifacts, args.url)
    choice.name = subject  # its records are the model's, as a study's are
    return choice


def command(args: argparse.Namespace) -> int:
    from axon.engines.payloads import resolve_artifacts
    from axon.records import results
    from axon.study.sizing import arithmetic, measured, show

    if args.cores is not None and args.event_rate is not None:
        raise AxonError("--cores sizes a farm of that many cores, --event-rate one for that input rate: give one of them")
    if args.onnx is not None and (args.model or args.path is not None) or args.model and args.path is not None:
        raise AxonError("give one of --model, --onnx and --path")
    if args.metrics_url and not args.url:
        raise AxonError("--metrics-url describes a server given with --url; axon starts this one itself")
    if args.results is not None and not args.results.exists():
        raise AxonError(f"{args.results}: no such file or folder")
    given = arithmetic.Given(
        client_ms=args.client_ms_per_event,
        cores=args.cores,
        event_rate=args.event_rate,
        headroom=args.headroom / 100,
        link_gbps=args.link_gbps,
    )
    runs = measured.read_runs(args.results) if args.results is not None else None
    subjects = _subject(args, runs)
    # A server at --url is in whatever mode it is: the one the user states, else "unknown".
    modes = [args.batching or "unknown"] if args.url else [args.batching] if args.batching else list(MODES)
    out = args.out or results.default_output(Path("results"), "size").with_suffix("")
    writer = results.ResultsWriter(out / "size-runs.json")
    records: list[dict] = []

    def save(record: dict) -> None:
        records.append(record)
        writer.save(records)

    artifacts = resolve_artifacts(args.artifacts)
    needs_server = runs is None or args.verify
    choices = {}
    try:
        if needs_server:
            if args.url is None and artifacts is None and args.onnx is None and args.path is None:
                raise AxonError("no artifacts to serve: run `axon train` (or give --artifacts, --onnx, --path or --url)")
            choices = {s: _choice(args, s, artifacts) for s in subjects}
        if runs is None:
            from axon.study.sizing import serve, spot

            budget = args.p99_ms if args.p99_ms is not None else 25.0
            for subject, choice in choices.items():
                print(f"measuring {subject} on the spot (event engine, open loop; p99 budget {budget:g} ms)…", file=sys.stderr)
                with serve.targets(choice, modes, args.url, args.metrics_url, out) as targets:
                    spot.measure(choice, targets, budget, args.duration, args.warmup, args.repeat, save)
            runs, source = records, str(writer.path)
        else:
            source = str(args.results)
        pairs = []
        for subject in subjects:
            # A mode nobody measured is left out unless it is the only one asked for (then its error is said).
            for mode in [
                mode for mode in modes if any(r["model"] == subject and r.get("batching") == mode for r in runs)
            ] or modes[:1]:
                m = measured.measured(runs, subject, mode, args.p99_ms, source)
                pairs.append((m, arithmetic.size(m, given)))
        print(show.table(given, pairs))
        verified, exit_code = [], 0
        if args.verify:
            from axon.study.sizing import serve, verify

            for m, s in pairs:
                choice = choices[m["subject"]]
                with serve.targets(choice, [m["batching"]], args.url, args.metrics_url, out) as targets:
                    rows = verify.run(
                        choice, next(iter(targets.values())), m, s, given, args.duration, args.warmup, args.repeat, save
                    )
                verified += rows
                confirmed, line = verify.conclusion(rows)
                print(f"{m['subject']}, batching {m['batching']}: {line}")
                exit_code = exit_code or (0 if confirmed else EXIT_NOT_CONFIRMED)
        plot = show.plot(given, pairs, verified, out)
        from axon.records.atomic import write_json

        write_json(
            out / "size.json",
            {
                "given": vars(given),
                "measured": [show.as_record(m) for m, _ in pairs],
                "sizing": [s for _, s in pairs],
                "verify": verified,
            },
        )
        print(f"sizing: {out / 'size.json'}; plot: {plot}" + (f"; runs: {writer.path}" if records else ""))
        return exit_code
    finally:
        writer.discard()
        for choice in choices.values():
            choice.close()


def add_parser(sub) -> None:
    p = sub.add_parser(
        "size",
        formatter_class=HelpFormatter,
        help="how many trigger cores one server carries within the p99 budget, and how many servers a farm needs (docs/sizing.md)",
    )
    p.add_argument(
        "results",
        type=Path,
        nargs="?",
        help="a study folder, a results file or a pytest-benchmark JSON that holds a capacity measurement "
        "(without it, one is measured on the spot)",
    )
    p.add_argument(
        "--client-ms-per-event",
        type=_non_negative_ms,
        required=True,
        metavar="MS",
        help="the rest of the trigger's work per event, per core, in ms",
    )
    p.add_argument("--cores", type=positive_int, help="the farm's client cores: how many servers they need")
    p.add_argument(
        "--event-rate",
        type=positive_float,
        metavar="EVENTS_PER_S",
        help="the farm's input rate: how many servers and cores it needs",
    )
    p.add_argument(
        "--headroom",
        type=_headroom,
        default=20.0,
        metavar="PERCENT",
        help="the share of each server's capacity kept back, in percent",
    )
    p.add_argument(
        "--link-gbps",
        type=positive_float,
        help="each server's network link: capacity is capped by it (default: no network limit)",
    )
    p.add_argument("--p99-ms", type=positive_float, help="the event p99 budget (default: the study's own, or 25 ms)")
    which = p.add_argument_group("what is sized (default: every model the results measured)")
    which.add_argument("--model", action="append", help="a model by name (repeatable), e.g. v1 or particle_classifier_pn")
    which.add_argument(
        "--onnx", type=Path, metavar="PATH", help="your own ONNX model (measured on the spot, or found in RESULTS by its name)"
    )
    which.add_argument("--path", type=Path, metavar="FILE.toml", help="a trigger path (docs/paths.md): sized per event")
    p.add_argument("--batching", choices=MODES, help="size one mode (default: both, where measured)")
    p.add_argument(
        "--verify",
        action="store_true",
        help="check the prediction with simulated trigger clients at 0.8x, 1.0x, 1.25x; exit 1 if p99 breaks at 0.8x or 1.0x",
    )
    p.add_argument("--artifacts", type=Path, help="trained models to serve (default ./artifacts)")
    p.add_argument("--url", help="measure or verify against this running Triton (gRPC host:port) instead of the embedded one")
    p.add_argument("--metrics-url", help="the --url server's Prometheus metrics (each model's counts are checked against them)")
    p.add_argument("--duration", type=positive_float, default=5.0, help="seconds per run, on the spot and in --verify")
    p.add_argument("--warmup", type=positive_float, default=1.0, help="warm-up seconds per run")
    p.add_argument(
        "--repeat",
        type=positive_int,
        default=3,
        help="runs of each capacity boundary and direct case on the spot, and of each --verify factor (a factor holds when half its runs do)",
    )
    p.add_argument("--out", type=Path, help="where size.json, size.png and the runs go (default results/size-<time>/)")
    p.set_defaults(func=command, trigger=None)
