"""Incremental ingestion vs one run: the sample corpus cut into batches (shuffled, so later batches bring smaller
ids), ingested one by one, against one Pipeline.run over everything and against re-running the whole pipeline
after each batch (what one would do without an index).

    python bench/ingest.py [--quick] [--docs N] [--batches 3]
"""
import argparse, tempfile, time
from pathlib import Path

import dask
import pandas as pd

import llmwork.fuzzy  # noqa: F401  (registers fuzzy_dedup)
from llmwork.ingest import corpus_documents, ingest
from llmwork.clean import Pipeline
from llmwork.io import read_corpus, sample_corpus_path

PIPELINE = {"steps": [{"step": "unicode_normalize"}, {"step": "clean_whitespace"}, {"step": "length", "min_chars": 100},
                      {"step": "exact_dedup"}, {"step": "fuzzy_dedup", "threshold": 0.8}]}


def read_dir(path):
    return pd.concat([pd.read_parquet(f) for f in sorted(Path(path).glob("*.parquet"))])


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--quick", action="store_true")
    ap.add_argument("--docs", type=int); ap.add_argument("--batches", type=int, default=3)
    args = ap.parse_args()
    n = args.docs or (3000 if args.quick else 20000)
    df = pd.read_json(sample_corpus_path(), lines=True, nrows=n).sample(frac=1.0, random_state=0)
    with tempfile.TemporaryDirectory() as d, dask.config.set({"scheduler": "threads", "dataframe.shuffle.method": "tasks"}):
        d = Path(d)
        per = -(-len(df) // args.batches)
        files = []
        for i in range(args.batches):
            files.append(d / f"batch-{i}.jsonl"); df.iloc[i * per:(i + 1) * per].to_json(files[-1], orient="records", lines=True)
        t0 = time.perf_counter()
        one = Pipeline.from_config(PIPELINE).run(read_corpus([str(f) for f in files]), d / "one")
        t_one = time.perf_counter() - t0
        t_rerun = 0.0  # the naive alternative: a full run over all batches so far, after each batch
        for i in range(1, args.batches):
            t0 = time.perf_counter()
            Pipeline.from_config(PIPELINE).run(read_corpus([str(f) for f in files[:i]]), d / f"rerun-{i}")
            t_rerun += time.perf_counter() - t0
        t_rerun += t_one
        reports, t_inc = [], []
        for i, f in enumerate(files):
            t0 = time.perf_counter()
            reports.append(ingest(str(f), d / "corpus", pipeline=PIPELINE if i == 0 else None))
            t_inc.append(time.perf_counter() - t0)
        kept_one = set(read_dir(d / "one" / "kept")["id"])
        kept_inc = set(corpus_documents(d / "corpus").compute()["id"])
    print(f"{n:,} Debian descriptions in {args.batches} shuffled batches; pipeline: {', '.join(s['step'] for s in PIPELINE['steps'])}")
    for r, t in zip(reports, t_inc):
        print(f"  v{r['version']:04d}: {r['n_in']:,} in, {r['n_kept']:,} kept, {r['retracted']['n']:,} earlier keeps retracted, "
              f"corpus {r['corpus_kept_after']:,} kept  ({t:.1f} s)")
    print(f"one run over everything: {one['n_kept']:,} kept ({t_one:.1f} s)")
    print(f"same kept documents: {kept_one == kept_inc} ({len(kept_inc):,} vs {len(kept_one):,})")
    print(f"time: incremental {sum(t_inc):.1f} s in total, last batch {t_inc[-1]:.1f} s; "
          f"re-running everything after each batch {t_rerun:.1f} s; ratio last batch / full re-run {t_inc[-1] / t_one:.2f}")


if __name__ == "__main__":
    main()
