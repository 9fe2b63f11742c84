"""Corpus-hygiene benchmark: llmwork's `pii` against datatrove's `PIIFormatter`, and `line_dedup` against
datatrove's three-stage sentence dedup, on the same documents in the same run; ratios printed.

    python bench/hygiene.py [--repeat K]

Rates are documents per second of CPU time of this process (`time.process_time`, i.e. per core; the machine is
shared), Arrow limited to one thread. `pii` runs on in-memory pandas partitions of 10,000 documents, e-mails and
IPv4 only (the classes datatrove handles; outputs compared) and with all six types; datatrove formats each
in-memory `Document`. The dedups differ in what they remove (lines vs spans of 3 sentences), so their ratio is a
rate comparison, not an output comparison; datatrove's runs with a local executor writing its signatures to a
temporary folder, its English sentence splitter being spaCy's (no download).
"""
import argparse
import tempfile
import time

import dask
import dask.dataframe as dd
import pandas as pd
import pyarrow as pa

from llmwork.io import read_sample_corpus
from llmwork.line_dedup import LineDedup
from llmwork.pii import Pii


def timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def bench_pii(texts):
    from datatrove.pipeline.formatters import PIIFormatter
    series = [pd.Series(texts[i:i + 10_000], dtype="string[pyarrow]") for i in range(0, len(texts), 10_000)]
    Pii().normalize(series[0].head(100))  # warm-up: the word classes and pattern caches are built once per process
    ours, cpu_ours, _ = timed(lambda: [t for s in series for t in Pii(types=["email", "ipv4"]).normalize(s).tolist()])
    _, cpu_all, _ = timed(lambda: [Pii().normalize(s) for s in series])
    f = PIIFormatter()
    theirs, cpu_dt, _ = timed(lambda: [f.format(t) for t in texts])
    # datatrove's placeholder turn runs over the whole stream; ours per partition (as per datatrove task)
    same = sum(a == b for a, b in zip(ours, [PIIFormatter().format(t) for t in texts[:10_000]])) if len(texts) <= 10_000 else None
    n = len(texts)
    print(f"pii (email+ipv4): llmwork {n / cpu_ours:,.0f} docs/s, datatrove PIIFormatter {n / cpu_dt:,.0f} docs/s, ratio {cpu_dt / cpu_ours:.2f}x")
    print(f"pii (all six types): llmwork {n / cpu_all:,.0f} docs/s, ratio to datatrove's two types {cpu_dt / cpu_all:.2f}x")
    if same is not None: print(f"  outputs equal to datatrove's on {same} of {n} documents")


def bench_dedup(frame):
    n = len(frame)
    ddf = dd.from_pandas(frame, npartitions=4)
    with dask.config.set(scheduler="synchronous"):
        (kept, removed), cpu_ours, _ = timed(lambda: [x.compute() for x in LineDedup().run(ddf)])
    print(f"line_dedup: llmwork {n / cpu_ours:,.0f} docs/s ({len(removed)} documents removed)")
    try:
        from datatrove.data import Document
        from datatrove.executor import LocalPipelineExecutor
        from datatrove.pipeline.dedup.sentence_dedup import SentDedupConfig, SentenceDedupFilter, SentenceDedupSignature, SentenceFindDedups
        config = SentDedupConfig()
        docs = [Document(text=t, id=str(i)) for i, t in zip(frame["id"], frame["text"])]
        with tempfile.TemporaryDirectory() as tmp:
            def run():
                LocalPipelineExecutor([docs, SentenceDedupSignature(f"{tmp}/sigs", config=config, finder_workers=1)], tasks=1, logging_dir=f"{tmp}/l1").run()
                LocalPipelineExecutor([SentenceFindDedups(f"{tmp}/sigs", f"{tmp}/dups", config=config)], tasks=1, logging_dir=f"{tmp}/l2").run()
                out = []
                LocalPipelineExecutor([docs, SentenceDedupFilter(f"{tmp}/dups", config=config), lambda data, rank, ws: out.extend(data)], tasks=1,
                                      logging_dir=f"{tmp}/l3").run()
                return out
            _, cpu_dt, _ = timed(run)
        print(f"line_dedup vs datatrove sentence dedup: datatrove {n / cpu_dt:,.0f} docs/s, ratio {cpu_dt / cpu_ours:.2f}x")
    except Exception as e:  # say why, never a traceback
        print(f"datatrove's sentence dedup did not run here ({type(e).__name__}: {str(e).splitlines()[0][:200]}); no ratio")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1, help="repeat the sample corpus K times")
    args = ap.parse_args()
    pa.set_cpu_count(1)
    frame = read_sample_corpus().compute()[["id", "text"]]
    frame = pd.concat([frame.assign(id=frame["id"] + f"#{k}") for k in range(args.repeat)], ignore_index=True)
    texts = frame["text"].astype(str).tolist()
    bench_pii(texts)
    bench_dedup(frame)
