"""``axon train``: train v1 and v2, export them to ONNX, write every model repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from axon.cli.args import HelpFormatter, add_queue_options, model_versions, positive_int


def command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from axon.offline import data, pipeline
    from axon.offline.repository import ServingOptions

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
            options=ServingOptions(max_queue_size=args.max_queue_size, queue_timeout_us=args.queue_timeout_us),
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


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train v1 and v2, export to ONNX, write the model repositories", formatter_class=HelpFormatter
    )
    p.add_argument(
        "--dataset", default="synthetic", help="synthetic (offline), higgs (UCI download), or a path/URL to HIGGS.csv[.gz]"
    )
    p.add_argument("--rows", type=positive_int, default=100_000, help="rows to read or generate")
    p.add_argument("--seed", type=int, default=0, help="seed of the data generator, the split, the weights and the shuffling")
    p.add_argument("--epochs", type=positive_int, default=8, help="training epochs per model")
    # A string default goes through type=, so --help shows it as a user would type it.
    p.add_argument("--models", type=model_versions, default="v1,v2", help="comma-separated versions")
    p.add_argument("--out", type=Path, default=Path("artifacts"), help="output directory: models, repositories, validation rows")
    p.add_argument(
        "--gpu-repository",
        type=Path,
        help="also write the GPU-container repository here (docker-compose.yml mounts model_repository); "
        "by default nothing is written outside --out",
    )
    add_queue_options(p)
    p.set_defaults(func=command)
