"""The `salecast` command: serve, train, evaluate, demo and data import.

Training modules (and so torch) are imported only by the subcommands that need them, so
`salecast serve` starts without torch installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from service.errors import SalecastError
from training.jobs import JOBS, load_job

DEFAULT_ARTIFACTS = os.environ.get("SALECAST_ARTIFACTS_DIR", "artifacts")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", default=[], help="input file(s) or folder")
    parser.add_argument(
        "--format", default="synthetic", help="input format (see `salecast data formats`)"
    )
    parser.add_argument("--artifacts", type=Path, default=Path(DEFAULT_ARTIFACTS))
    parser.add_argument("--results-dir", type=Path, default=Path("bench/results"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device for training: cpu or cuda")


def build_parser(with_jobs: bool = True) -> argparse.ArgumentParser:
    """The full parser; `with_jobs=False` skips importing the job modules (and torch)."""
    parser = argparse.ArgumentParser(prog="salecast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument(
        "--demo", action="store_true", help="train demo models on synthetic data if none exist"
    )

    for verb in ("train", "evaluate"):
        verb_parser = sub.add_parser(verb, help=f"{verb} a model")
        models = verb_parser.add_subparsers(dest="model", required=True)
        for name in JOBS:
            if not with_jobs:
                continue
            model_parser = models.add_parser(name)
            _add_common(model_parser)
            load_job(name).add_arguments(model_parser)

    keys = sub.add_parser("keys", help="manage the service's API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser(
        "new", help="make a key, append its hash to the key file, print the key once"
    )
    new.add_argument("--name", required=True, help="who uses the key (shown in logs)")
    new.add_argument(
        "--scopes", required=True, help="comma-separated: read (scores), write (events), admin"
    )
    new.add_argument("--rate", type=float, default=None, help="requests per second (no limit)")
    new.add_argument("--file", type=Path, required=True, help="the SALECAST_API_KEYS_FILE")

    demo = sub.add_parser("demo", help="train every demo model whose artifact is missing")
    demo.add_argument("--artifacts", type=Path, default=Path(DEFAULT_ARTIFACTS))
    demo.add_argument("--seed", type=int, default=0)

    bulk = sub.add_parser("score-bulk", help="score a large table with an artifact on Dask")
    bulk.add_argument("--artifact", type=Path, required=True, help="artifacts/<model>/<version>")
    bulk.add_argument("--input", required=True, help="CSV or Parquet file, folder or glob")
    bulk.add_argument("--output", required=True, help="Parquet folder to write")
    bulk.add_argument("--graph", default=None)
    bulk.add_argument("--keep", nargs="*", default=None, help="columns copied to the output")
    bulk.add_argument(
        "--scheduler", default="threads", help="threads, processes, or a tcp:// dask scheduler"
    )

    data = sub.add_parser("data", help="import public data into the canonical schema")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_sub.add_parser("formats", help="list accepted input formats")
    imp = data_sub.add_parser(
        "import", help="read a public file, report bad rows, write canonical CSV"
    )
    imp.add_argument("--format", required=True)
    imp.add_argument("--data", nargs="+", required=True)
    imp.add_argument("--out", type=Path, required=True)
    synth = data_sub.add_parser("synth", help="write synthetic events or sales")
    synth.add_argument("--kind", choices=["events", "sales"], required=True)
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Only train/evaluate need the job modules; serving hosts have no torch to import.
    wants_jobs = bool(argv) and argv[0] in {"train", "evaluate"}
    args = build_parser(with_jobs=wants_jobs).parse_args(argv)
    if args.command == "serve":
        from service.logs import configure_logging
        from service.main import run  # no torch on this path

        # The service logs JSON lines; the demo training before it should too, and a
        # second plain-text handler would print every line twice.
        configure_logging()

        if args.demo:
            from training.demo import ensure_demo_models

            ensure_demo_models(Path(DEFAULT_ARTIFACTS))
        run(host=args.host, port=args.port)
        return 0
    if args.command == "keys":
        from service.auth.keys import add_key

        scopes = frozenset(s.strip() for s in args.scopes.split(",") if s.strip())
        try:
            key = add_key(args.file, args.name, scopes, args.rate)
        except SalecastError as exc:
            print(f"salecast keys: {exc}", file=sys.stderr)
            return 2
        print(key)
        print(
            f"(added {args.name!r} with {','.join(sorted(scopes))} to {args.file}; the key is "
            "shown only now; clients send it as `Authorization: Bearer <key>`)",
            file=sys.stderr,
        )
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "demo":
        from training.demo import ensure_demo_models

        ensure_demo_models(args.artifacts, seed=args.seed)
        return 0
    if args.command in {"train", "evaluate"}:
        try:
            job = load_job(args.model)
            result = job.train(args) if args.command == "train" else job.evaluate(args)
        except SalecastError as exc:  # bad --data or --format: a message, not a traceback
            print(f"salecast {args.command} {args.model}: {exc}", file=sys.stderr)
            return 2
        if args.command == "train":
            print(result)
        return 0
    if args.command == "score-bulk":
        from training.bulk_score import score_table

        print(
            score_table(
                args.artifact,
                args.input,
                args.output,
                graph_name=args.graph,
                keep_columns=args.keep,
                scheduler=args.scheduler,
            )
        )
        return 0
    if args.command == "data":
        from training.data_cli import run_data_command

        return run_data_command(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
