"""An adaptive cluster under a cleaning run: workers over time, and the run's time and output against a fixed
cluster of the same maximum size (the peer).

    python bench/elastic.py [--quick] [--threads]

--threads uses in-process workers (they start in milliseconds); the default is worker processes, as in production.
"""
import argparse, tempfile, time
from pathlib import Path

import dask
import pandas as pd

from _cluster import shut  # bench/ is on sys.path when a script here runs
from llmwork.elastic import WorkerTrace, elastic_client, wait_for_worker_count
from llmwork.backend import get_client
from llmwork.clean import Pipeline
from llmwork.io import read_corpus, sample_corpus_path

PIPELINE = {"steps": [{"step": "unicode_normalize"}, {"step": "clean_whitespace"}, {"step": "gopher_quality"},
                      {"step": "exact_dedup"}]}


def kept_ids(path):
    return sorted(pd.concat([pd.read_parquet(f, columns=["id"]) for f in sorted(Path(path).glob("*.parquet"))])["id"])


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--quick", action="store_true"); ap.add_argument("--threads", action="store_true")
    args = ap.parse_args()
    n = 8000 if args.quick else 64000
    kw = dict(processes=False, protocol="tcp://") if args.threads else {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        df = pd.read_json(sample_corpus_path(), lines=True, nrows=n)
        for i in range(8): df.iloc[i::8].to_json(d / f"part-{i}.jsonl", orient="records", lines=True)
        src = [str(d / f"part-{i}.jsonl") for i in range(8)]
        t0 = time.perf_counter()
        client = elastic_client(0, 2, dashboard_address=None, **kw)
        try:
            with WorkerTrace(client, interval=0.1) as trace:
                wait_for_worker_count(client, lambda c: c == 0, timeout=60)
                t1 = time.perf_counter()
                with client.as_current():  # not scheduler=client in dask.config: new worker processes get a pickled copy of the config
                    rep = Pipeline.from_config(PIPELINE).run(read_corpus(src), d / "elastic")
                t_adaptive = time.perf_counter() - t1
                wait_for_worker_count(client, lambda c: c == 0, timeout=120)
        finally:
            shut(client)
        fixed = get_client("cpu", n_workers=2, dashboard_address=None, **({"processes": False} if args.threads else {}))
        try:
            fixed.wait_for_workers(2, timeout=120)
            t1 = time.perf_counter()
            with fixed.as_current():
                Pipeline.from_config(PIPELINE).run(read_corpus(src), d / "fixed")
            t_fixed = time.perf_counter() - t1
        finally:
            shut(fixed)
        same = kept_ids(d / "elastic" / "kept") == kept_ids(d / "fixed" / "kept")
    print(f"{n:,} documents in 8 files; {'threads' if args.threads else 'processes'}; adaptive (0, 2)")
    print("workers over time (seconds, workers): " + ", ".join(f"({t:.1f}, {c})" for t, c in trace.changes))
    print(f"cleaning run: adaptive {t_adaptive:.1f} s (workers started on demand) vs fixed 2 workers {t_fixed:.1f} s "
          f"(ratio {t_adaptive / t_fixed:.2f}); kept {rep['n_kept']:,}; same kept ids: {same}")


if __name__ == "__main__":
    main()
