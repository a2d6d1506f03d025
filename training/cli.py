"""The `salecast` command: serve, train, evaluate, demo and data import.

Training modules (and so torch) are imported only by the subcommands that need them, so
`salecast serve` starts without torch installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from types import ModuleType

from service import __version__
from service.errors import SalecastError
from training.jobs import JOBS, load_evaluation, load_job

DEFAULT_ARTIFACTS = os.environ.get("SALECAST_ARTIFACTS_DIR", "artifacts")

EXAMPLES = {
    "salecast": """examples:
  salecast serve --demo                  train the demo models if missing, then serve
  salecast train imn --format taobao --data $SALECAST_DATA/taobao_userbehavior
  salecast evaluate stmp --format walmart --data $SALECAST_DATA/walmart_store_sales
  salecast data formats                  the public log formats --format accepts
""",
    "serve": """examples:
  salecast serve                          serve ./artifacts on 127.0.0.1:8000
  salecast serve --demo --host 0.0.0.0    demo models, reachable from other hosts
settings come from SALECAST_* environment variables (README, Configuration)
""",
    "train": """examples:
  salecast train intent                   on synthetic events (no data needed)
  salecast train cvr --format tmall_ijcai15 --data $SALECAST_DATA/tmall_ijcai15_userlog
  salecast train dinop --format walmart --data $SALECAST_DATA/walmart_store_sales
each model's own options: salecast train <model> --help
""",
    "evaluate": """examples:
  salecast evaluate imn --format taobao --data $SALECAST_DATA/taobao_userbehavior --seeds 3
  salecast evaluate intent --format tianchi --data $SALECAST_DATA/tianchi_mobile
results (JSON and Markdown) are written under --results-dir; see bench/README.md
""",
    "keys": """examples:
  salecast keys new --name grafana --scopes read --file keys.json
  salecast keys new --name ingest --scopes read,write --rate 500 --file keys.json
""",
    "demo": """examples:
  salecast demo                           train what is missing under ./artifacts
""",
    "score-bulk": """examples:
  salecast score-bulk --artifact artifacts/intent/<version> --input users.parquet \\
      --output scored/ --graph score
""",
    "data": """examples:
  salecast data formats
  salecast data import --format taobao --data UserBehavior.csv --out canonical/
  salecast data synth --kind sales --out sales/
""",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default beside its help (unless it has none worth showing: required,
    a flag, an empty list), and examples (epilogs) printed as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or not _shows_default(action):
            return text
        return f"{text} (default: %(default)s)"


def _shows_default(action: argparse.Action) -> bool:
    flag = action.nargs == 0  # store_true / store_false / help / version
    empty = action.default in (None, [], argparse.SUPPRESS)
    return bool(action.option_strings) and not (action.required or flag or empty)


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose subcommand parsers format their help the same way (argparse
    builds them with the parent's class, not its `formatter_class`)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def _add_common(parser: argparse.ArgumentParser, formats: list[str]) -> None:
    parser.add_argument(
        "--data", nargs="+", default=[], metavar="PATH", help="input file(s) or folder"
    )
    parser.add_argument(
        "--format",
        default="synthetic",
        choices=formats,
        metavar="FORMAT",
        help="input format, one of: %(choices)s (see `salecast data formats`)",
    )
    parser.add_argument(
        "--artifacts", type=Path, default=Path(DEFAULT_ARTIFACTS), help="artifacts root"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=Path("bench/results"), help="evaluate: results"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N")


def _summary(job: ModuleType) -> str:
    """What a job trains, from the first line of its module docstring
    ("`salecast train|evaluate imn`: IMN-Net next-item recommendation (issue 3).")."""
    first = (job.__doc__ or "").strip().splitlines()[0] if job.__doc__ else ""
    what = first.split("`: ", 1)[-1]
    return re.sub(r"\s*\(issue \d+\)", "", what).rstrip(".")


def _document_every_option(parser: argparse.ArgumentParser) -> None:
    """Options declared without help still show their default (ArgumentDefaultsHelpFormatter
    prints defaults only beside a help text)."""
    for action in parser._actions:
        if action.option_strings and action.help is None and _shows_default(action):
            action.help = "(default: %(default)s)"
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _document_every_option(child)


def build_parser(with_jobs: bool = True) -> argparse.ArgumentParser:
    """The full parser; `with_jobs=False` skips importing the job modules (and torch)."""
    parser = Parser(prog="salecast", description=__doc__, epilog=EXAMPLES["salecast"])
    parser.add_argument("--version", action="version", version=f"salecast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP service", epilog=EXAMPLES["serve"])
    serve.add_argument("--host", default=None, help="default: SALECAST_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="default: SALECAST_PORT (8000)")
    serve.add_argument(
        "--demo", action="store_true", help="train demo models on synthetic data if none exist"
    )

    formats: list[str] = []
    if with_jobs:
        from training.data import FORMATS

        formats = list(FORMATS)
    for verb in ("train", "evaluate"):
        verb_parser = sub.add_parser(
            verb,
            help=f"{verb} a model" + (" against its baselines" if verb == "evaluate" else ""),
            epilog=EXAMPLES[verb],
        )
        models = verb_parser.add_subparsers(dest="model", required=True, metavar="MODEL")
        for name in JOBS:
            if not with_jobs:
                continue
            job = load_job(name)
            what = _summary(job)
            model_parser = models.add_parser(name, help=what, description=what)
            _add_common(model_parser, formats)
            job.add_arguments(model_parser)

    keys = sub.add_parser("keys", help="manage the service's API keys", epilog=EXAMPLES["keys"])
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

    demo = sub.add_parser(
        "demo", help="train every demo model whose artifact is missing", epilog=EXAMPLES["demo"]
    )
    demo.add_argument(
        "--artifacts", type=Path, default=Path(DEFAULT_ARTIFACTS), help="artifacts root"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed")

    bulk = sub.add_parser(
        "score-bulk",
        help="score a large table with an artifact on Dask",
        epilog=EXAMPLES["score-bulk"],
    )
    bulk.add_argument("--artifact", type=Path, required=True, help="artifacts/<model>/<version>")
    bulk.add_argument("--input", required=True, help="CSV or Parquet file, folder or glob")
    bulk.add_argument("--output", required=True, help="Parquet folder to write")
    bulk.add_argument("--graph", default=None, help="graph of the artifact; default: its first")
    bulk.add_argument("--keep", nargs="*", default=None, help="columns copied to the output")
    bulk.add_argument(
        "--scheduler", default="threads", help="threads, processes, or a tcp:// dask scheduler"
    )

    data = sub.add_parser(
        "data", help="import public data into the canonical schema", epilog=EXAMPLES["data"]
    )
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_sub.add_parser("formats", help="list accepted input formats")
    imp = data_sub.add_parser(
        "import", help="read a public file, report bad rows, write canonical CSV"
    )
    imp.add_argument("--format", required=True, help="see `salecast data formats`")
    imp.add_argument("--data", nargs="+", required=True, metavar="PATH", help="files or folder")
    imp.add_argument("--out", type=Path, required=True, help="folder for the canonical CSV")
    synth = data_sub.add_parser("synth", help="write synthetic events or sales")
    synth.add_argument("--kind", choices=["events", "sales"], required=True)
    synth.add_argument("--out", type=Path, required=True, help="folder to write")
    synth.add_argument("--seed", type=int, default=0, help="random seed")
    _document_every_option(parser)
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
            if args.command == "train":
                result = load_job(args.model).train(args)
            else:
                from training.reporting import CODE_AT_START_ENV, code_version

                os.environ[CODE_AT_START_ENV] = code_version() or ""
                try:
                    result = load_evaluation(args.model).evaluate(args)
                finally:
                    del os.environ[CODE_AT_START_ENV]
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
