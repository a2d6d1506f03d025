"""One command per model regenerates its accuracy results: `python -m bench.accuracy --model cvr`.

Every committed `bench/results/accuracy-<model>-<dataset>.json` comes from one
`salecast evaluate <model> ...` line; this module is the list of those lines, per model and
data set, so re-running a model's results needs no copying from docs. Each line runs as its
own `salecast` process, so the command recorded in the result is that line itself (with data
paths as `$SALECAST_DATA/<data set>/<file>`), reproducible without this script. At the end
`bench/results/SUMMARY.md` is regenerated.

Data live under the folder `$SALECAST_DATA` names (the shared data sets' folder names, as
BENCHMARKS.md uses them). Each line trains every learned method with 3 seeds; on a 2-core
CPU most take minutes, Walmart's STMP and DINOP the longest. Run one data set with
`--dataset`; `--dry-run` prints the lines.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

DATA_ENV = "SALECAST_DATA"

# model -> data set -> the evaluate arguments after `salecast evaluate <model>`.
# "synthetic" needs no data; `{data}` is `$SALECAST_DATA`.
RUNS: dict[str, dict[str, list[str]]] = {
    "intent": {
        "synthetic": ["--seeds", "3", "--test-cuts", "12", "--plot"],
        "tianchi_mobile": [
            "--data", "{data}/tianchi_mobile/tianchi_mobile_recommend_train_user.csv.gz",
            "--format", "tianchi", "--seeds", "3", "--plot",
        ],
        "tmall_brand_2013": [
            "--data", "{data}/tmall_brand_2013/t_alibaba_data.csv.gz", "--format", "tmall_brand",
            "--seeds", "3", "--epochs", "10", "--plot",
        ],
        # 4 epochs (~33 s each for every net on 2 cores, 6 nets a seed): 10 would pass an hour
        "taobao_userbehavior": [
            "--data", "{data}/taobao_userbehavior/userbehavior_window.csv.gz", "--format",
            "taobao", "--bucket-seconds", "600", "--label-seconds", "600", "--short-len", "3",
            "--long-len", "2", "--long-group", "3", "--seeds", "3", "--epochs", "4", "--plot",
        ],
        # every purchase is on Double 11 (the lines are its new buyers): split by user;
        # 5 epochs (TPG-DNN ~15 s each on 2 cores) keep the 3-seed run under 25 minutes
        "tmall_ijcai15_format2": [
            "--data", "{data}/tmall_ijcai15_format2", "--format", "tmall_ijcai15_format2",
            "--split", "users", "--seeds", "3", "--epochs", "5", "--plot",
        ],
    },
    "cvr": {
        "synthetic": ["--seeds", "3", "--plot"],
        "tmall_ijcai15_userlog": [
            "--data", "{data}/tmall_ijcai15_userlog", "--format", "tmall_ijcai15", "--seeds", "3",
            "--plot",
        ],
        "tianchi_mobile": [
            "--data", "{data}/tianchi_mobile", "--format", "tianchi", "--test-frac", "0.3",
            "--seeds", "3", "--plot",
        ],
        "taobao_userbehavior": [
            "--data", "{data}/taobao_userbehavior/userbehavior_head.csv.gz", "--format", "taobao",
            "--label-days", "1", "--seeds", "3", "--plot",
        ],
        # 4 epochs on D (~18 s each on 2 cores, 4 nets a seed): 10 would pass 25 minutes
        "tmall_brand_2013": [
            "--data", "{data}/tmall_brand_2013", "--format", "tmall_brand", "--seeds", "3",
            "--epochs", "4", "--plot",
        ],
        # every buy is on Double 11 (the lines are its new buyers): split by user
        "tmall_ijcai15_format2": [
            "--data", "{data}/tmall_ijcai15_format2", "--format", "tmall_ijcai15_format2",
            "--split", "users", "--seeds", "3", "--plot",
        ],
    },
    "imn": {
        "synthetic": [
            "--seeds", "3", "--max-events", "10000", "--dim", "32", "--negatives", "32",
            "--epochs", "20", "--plot",
        ],
        "yoochoose_clicks": [
            "--data", "{data}/yoochoose_clicks/yoochoose-clicks-100k_train_full.csv.gz",
            "--format", "yoochoose", "--dim", "64", "--epochs", "20", "--seeds", "3", "--plot",
        ],
        # the whole sample (138,847 events) at 4 epochs (2 cores, one torch thread, a seed's
        # fits: IMN ~6 min, JODIE ~3, SASRec and GRU4Rec ~2; ~40 minutes for 3 seeds)
        "tmall_brand_2013": [
            "--data", "{data}/tmall_brand_2013/t_alibaba_data.csv.gz", "--format", "tmall_brand",
            "--dim", "64", "--epochs", "4", "--seeds", "3", "--plot",
        ],
        # the first 40,000 of 88k events (a large item vocabulary to rank over): 3 seeds at 4
        # epochs take 32-52 minutes on 2 cores, the whole window two hours or more
        "taobao_userbehavior": [
            "--data", "{data}/taobao_userbehavior/userbehavior_window.csv.gz", "--format",
            "taobao", "--max-events", "40000", "--dim", "64", "--epochs", "4", "--seeds", "3",
            "--plot",
        ],
        # the first 40,000 of ~820k invoice lines at 3 epochs (2 cores: GRU4Rec ~16 s, JODIE
        # ~40 s, IMN ~60 s an epoch): the whole file (~20x) would take hours
        "uci_online_retail_ii": [
            "--data", "{data}/uci_online_retail_ii", "--format", "online_retail",
            "--max-events", "40000", "--dim", "64", "--epochs", "3", "--seeds", "3", "--plot",
        ],
    },
    "stmp": {
        "synthetic": ["--seeds", "3", "--steps", "600", "--few-shot", "0,1,2", "--plot"],
        "walmart_store_sales": [
            "--data", "{data}/walmart_store_sales", "--format", "walmart", "--seeds", "3",
            "--few-shot", "0,1,2", "--plot",
        ],
        # one daily series of 1,547 steps: 600 optimiser steps (as synthetic) keep 7 nets x 3
        # seeds and the few-shot study near 25 minutes; 1500 would take over an hour
        "m5": [
            "--data", "{data}/m5", "--format", "m5", "--seeds", "3", "--steps", "600",
            "--few-shot", "0,1,2,3", "--plot",
        ],
        "uci_online_retail_ii": [
            "--data", "{data}/uci_online_retail_ii", "--format", "online_retail", "--seeds", "3",
            "--plot",
        ],
    },
    "dinop": {
        "synthetic": ["--seeds", "3"],
        "walmart_store_sales": [
            "--data", "{data}/walmart_store_sales", "--format", "walmart", "--seeds", "3",
        ],
        "tmall_ijcai15_userlog": [
            "--data", "{data}/tmall_ijcai15_userlog/user_log_head.csv.gz", "--format",
            "tmall_ijcai15", "--seeds", "3",
        ],
        # the sample's promotion weeks all fall in 2010: Black Friday trains, Cyber Monday
        # validates, Christmas tests (the full file's 2011 season allows the year split)
        "uci_online_retail_ii": [
            "--data", "{data}/uci_online_retail_ii", "--format", "online_retail", "--split",
            "dates", "--seeds", "3",
        ],
    },
}  # fmt: skip


def command(model: str, dataset: str, data_root: str) -> list[str]:
    """The `salecast evaluate` line of one committed result."""
    args = [a.replace("{data}", data_root) for a in RUNS[model][dataset]]
    return ["salecast", "evaluate", model, *args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, choices=sorted(RUNS))
    parser.add_argument("--dataset", default=None, help="one data set (default: all of them)")
    parser.add_argument("--results-dir", type=Path, default=Path("bench/results"))
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    runs = RUNS[args.model]
    if args.dataset is not None and args.dataset not in runs:
        parser.error(f"--dataset: {args.model} has results for {', '.join(runs)}")
    data_root = os.environ.get(DATA_ENV, "")
    chosen = [args.dataset] if args.dataset else list(runs)
    needs_data = [d for d in chosen if d != "synthetic"]
    if needs_data and not data_root and not args.dry_run:
        parser.error(f"set ${DATA_ENV} to the folder holding {', '.join(needs_data)}")
    salecast = str(Path(sys.executable).with_name("salecast"))
    failed: list[str] = []
    for dataset in chosen:
        line = command(args.model, dataset, data_root or f"${DATA_ENV}")
        if args.results_dir != Path("bench/results"):
            line += ["--results-dir", str(args.results_dir)]
        print("+", shlex.join(line), flush=True)
        if not args.dry_run and subprocess.run([salecast, *line[1:]]).returncode != 0:
            failed.append(dataset)  # the others still run; the exit status says so
    if args.dry_run:
        return 0
    from bench.summary import main as summary

    summary([])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
