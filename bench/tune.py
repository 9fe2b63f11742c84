"""A hyperparameter search over a tiny GPT on the sample corpus: Optuna random search + successive halving,
trials as Dask tasks on 2 workers. Prints the results table and writes the parallel-coordinates figure.

    python bench/tune.py [--quick] [--trials N] [--html tune.html]

Peer: the same trials one after another (no pruning) would take n_trials x the time of a full trial; the script
prints the search's wall time and the trial-seconds pruning saved.
"""
import argparse, tempfile, time
from pathlib import Path

import dask
import dask.dataframe as dd
import pandas as pd

from _cluster import shut  # bench/ is on sys.path when a script here runs
from llmwork.tune import gpt_trial, tune
from llmwork.backend import get_client
from llmwork.io import sample_corpus_path
from llmwork.models import ByteTokenizer, pack_tokens


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--quick", action="store_true"); ap.add_argument("--trials", type=int)
    ap.add_argument("--html", default="tune.html")
    args = ap.parse_args()
    trials, steps = (args.trials or (6 if args.quick else 16)), (40 if args.quick else 160)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        docs = pd.read_json(sample_corpus_path(), lines=True, nrows=5000)[["text"]]
        with dask.config.set(scheduler="threads"):
            pack_tokens(dd.from_pandas(docs, npartitions=4), ByteTokenizer(), d / "tokens")
        fixed = {"data": str(d / "tokens"), "steps": steps, "batch_size": 16, "model": "gpt-tiny", "block_size": 64, "n_layer": 2}
        space = {"lr": {"low": 1e-4, "high": 3e-2, "log": True}, "n_embd": {"choices": [32, 64, 128]}, "weight_decay": {"low": 0.0, "high": 0.2}}
        client = get_client("cpu", n_workers=2, threads_per_worker=1, dashboard_address=None)
        try:
            client.wait_for_workers(2, timeout=120)
            t0 = time.perf_counter()
            res = tune(gpt_trial, space, trials, client, storage=d / "study.journal", fixed=fixed, reduction_factor=3)
            wall = time.perf_counter() - t0
        finally:
            shut(client)
        table, best_loss, best_params = res.table, res.best_loss, res.best_params  # read while the study file exists
        res.figure().write_html(args.html, include_plotlyjs=True)
    table["seconds"] = table["duration"].dt.total_seconds().round(1)
    print(f"{trials} trials of a GPT ({steps} steps, 2 layers, block 64) on 2 Dask workers: {wall:.0f} s wall")
    print(table[["number", "state", "loss", "lr", "n_embd", "weight_decay", "seconds"]].round(4).to_string(index=False))
    full = table.loc[table.state == "COMPLETE", "seconds"].mean()
    print(f"best eval loss {best_loss:.4f} with {best_params}; pruned {int((table.state == 'PRUNED').sum())} trials, "
          f"saving about {(full * len(table) - table.seconds.sum()):.0f} trial-seconds; figure: {args.html}")


if __name__ == "__main__":
    main()
