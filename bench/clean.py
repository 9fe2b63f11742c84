"""Cleaning benchmark: llmwork's vectorized filters against datatrove's, same documents, one process each.

    python bench/clean.py [--quick] [--repeat K] [--datatrove-docs N]

1. Filters: Gopher quality -> Gopher repetition -> C4 (datatrove defaults), chained as a datatrove pipeline chains
   them (a document removed by one filter is not seen by the next). datatrove calls `filter()` per document on
   in-memory `Document`s (no I/O charged to it); llmwork runs the same three steps over in-memory pandas partitions
   of 10,000 documents. Keep/remove agreement per document, and every disagreement classified.
2. The full default pipeline (`llmwork clean`: read JSONL.gz, NFKC, whitespace, boilerplate, length, non-text,
   Gopher repetition + quality, C4, FineWeb, exact dedup, write Parquet) with Dask's synchronous scheduler, on the
   sample corpus and on the sample repeated K times, against datatrove's rate on the three filters.

Rates are documents (and MB of UTF-8 text) per second of CPU time of this process (`time.process_time`), i.e. per
core: the machine is shared, so wall-clock time measures the neighbours as much as the code. Arrow's thread pool
is limited to one thread so that llmwork uses one core like datatrove. Wall-clock seconds are printed too.
"""
import argparse
import collections
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import dask
import pandas as pd
import pyarrow as pa

from llmwork.clean import C4Quality, GopherQuality, GopherRepetition, Pipeline, apply_partition_steps, clean_corpus, word_tokens
from llmwork.io import sample_corpus_path


def timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def load_sample(n=None):
    with gzip.open(sample_corpus_path(), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    frame = pd.DataFrame(rows[:n] if n else rows).astype({"id": "string", "text": "string", "package": "string", "section": "string"})
    return frame


def datatrove_chain(texts, ids):
    "Keep/remove per document from datatrove's three filters chained; reasons as datatrove names them."
    from datatrove.data import Document
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.filters.base_filter import get_filter_result
    chain = [("gopher_quality", GopherQualityFilter()), ("gopher_repetition", GopherRepetitionFilter()),
             ("c4_quality", C4QualityFilter())]
    for _, f in chain: f.filter(Document(text="warm up the tokenizer. " * 3, id="w"))
    out = []
    for text, doc_id in zip(texts, ids):
        verdict = None
        for name, f in chain:
            keep, reason = get_filter_result(f.filter(Document(text=text, id=doc_id)))  # C4 edits text: a fresh Document each
            if not keep:
                verdict = (name, reason or "removed")
                break
        out.append(verdict)
    return out


def llmwork_chain(frame, partition_rows=10_000):
    steps = [GopherQuality(), GopherRepetition(), C4Quality()]
    verdict = {}
    for start in range(0, len(frame), partition_rows):
        part = frame.iloc[start:start + partition_rows]
        _, removed, _ = apply_partition_steps(part, steps)
        verdict.update(zip(removed["id"], zip(removed["step"], removed["reason"])))
    return [verdict.get(i) for i in frame["id"]]


def spacy_tokens_differ(texts):
    "For each text: whether our word tokens differ from spaCy's (what datatrove's word-based rules see)."
    import spacy
    nlp = spacy.blank("en")
    ours = word_tokens(pd.Series(texts, dtype="string")).groupby("row")["token"].apply(list)
    return [ours.get(i, []) != [t.text.strip() for t in nlp(s) if t.text.strip()] for i, s in enumerate(texts)]


def explain(frame, ref, got, examples=3):
    bad = [i for i, (a, b) in enumerate(zip(ref, got)) if (a is None) != (b is None)]
    print(f"  keep/remove disagreements: {len(bad)}")
    if not bad: return
    texts = [frame["text"].iloc[i] for i in bad]
    differ = spacy_tokens_differ(texts)
    kinds = collections.Counter()
    for i, d in zip(bad, differ):
        a, b = ref[i], got[i]
        kind = ("datatrove removes, llmwork keeps" if a else "llmwork removes, datatrove keeps") + \
               f" [{(a or b)[1]}]" + (" - word tokens differ from spaCy's" if d else " - same word tokens")
        kinds[kind] += 1
    for kind, n in kinds.most_common(): print(f"    {n:>5}  {kind}")
    for i in bad[:examples]:
        print(f"    e.g. {frame['id'].iloc[i]}: datatrove {ref[i]}, llmwork {got[i]}: {frame['text'].iloc[i][:160]!r}")


def mb(frame):
    return frame["text"].str.encode("utf-8").str.len().sum() / 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5,000 documents for the filter comparison, no repeated corpus")
    ap.add_argument("--datatrove-docs", type=int, help="documents for the filter comparison (default: all 63,905)")
    ap.add_argument("--repeat", type=int, default=4, help="size of the larger corpus, in copies of the sample (default 4)")
    args = ap.parse_args(argv)
    try:
        import datatrove  # noqa: F401
        import spacy  # noqa: F401
    except ImportError as e:
        sys.exit(f"bench/clean.py needs datatrove and spacy (pip install 'datatrove[processing]' spacy): {e}")
    pa.set_cpu_count(1)
    dask.config.set(scheduler="synchronous")
    n = 5_000 if args.quick else args.datatrove_docs
    frame = load_sample(n)
    size = mb(frame)
    print(f"documents: {len(frame):,} ({size:.1f} MB of text) from the bundled sample corpus; machine: shared, "
          f"rates are per CPU-second of one process")

    print("\n== Gopher quality -> Gopher repetition -> C4, chained, in memory ==")
    ref, dt_cpu, dt_wall = timed(lambda: datatrove_chain(frame["text"].tolist(), frame["id"].tolist()))
    got, lw_cpu, lw_wall = timed(lambda: llmwork_chain(frame))
    dt_rate, lw_rate = len(frame) / dt_cpu, len(frame) / lw_cpu
    print(f"  datatrove: {dt_cpu:7.1f} s CPU ({dt_wall:.1f} s wall)  {dt_rate:8.0f} docs/s  {size / dt_cpu:6.2f} MB/s")
    print(f"  llmwork:   {lw_cpu:7.1f} s CPU ({lw_wall:.1f} s wall)  {lw_rate:8.0f} docs/s  {size / lw_cpu:6.2f} MB/s")
    print(f"  speed-up: {lw_rate / dt_rate:.1f}x docs/s per core")
    agree = sum((a is None) == (b is None) for a, b in zip(ref, got)) / len(frame)
    same_reason = sum(a == b for a, b in zip(ref, got)) / len(frame)
    print(f"  keep/remove agreement: {100 * agree:.3f}%   same step and reason: {100 * same_reason:.3f}%")
    print(f"  removed: datatrove {sum(r is not None for r in ref):,}, llmwork {sum(g is not None for g in got):,}")
    explain(frame, ref, got)

    print("\n== Full default pipeline (llmwork clean), Dask synchronous scheduler, end to end ==")
    sample_mb = mb(load_sample()) if n else size
    corpora = [("sample", sample_corpus_path(), 63_905)]
    with tempfile.TemporaryDirectory() as tmp:
        if not args.quick and args.repeat > 1:
            big = Path(tmp) / f"sample_x{args.repeat}.jsonl"
            with gzip.open(sample_corpus_path(), "rt", encoding="utf-8") as f: rows = [json.loads(l) for l in f]
            with open(big, "w", encoding="utf-8") as out:
                for k in range(args.repeat):
                    for r in rows: out.write(json.dumps({**r, "id": f"{r['id']}#{k}"}) + "\n")
            corpora.append((f"sample x{args.repeat}", str(big), 63_905 * args.repeat))
        for label, path, docs in corpora:
            report, cpu, wall = timed(lambda: clean_corpus(path, Path(tmp) / label.replace(" ", "_")))
            text_mb = sample_mb * docs / 63_905
            rate = docs / cpu
            print(f"  {label:<10} {docs:>8,} docs: {cpu:7.1f} s CPU ({wall:.1f} s wall)  {rate:8.0f} docs/s  "
                  f"{text_mb / cpu:6.2f} MB/s  kept {report['n_kept']:,}  -> {rate / dt_rate:.1f}x datatrove's 3-filter rate")


if __name__ == "__main__":
    main()
