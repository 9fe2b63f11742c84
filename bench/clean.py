"""Cleaning benchmark: llmwork's vectorized filters against datatrove's, same documents, one process each.

    python bench/clean.py [--docs N] [--repeat K] [--pipeline]

On three corpora of different shape (the bundled Debian descriptions; docstrings of Python's standard library, long
and code-like; gettext catalogues of the programs on this machine, short lines in dozens of languages and scripts):

1. Agreement: each of datatrove's four English filters (Gopher quality, Gopher repetition, C4, FineWeb; its
   defaults) alone on a fresh `Document` per document, against the same llmwork step alone; and the four chained as
   datatrove chains them (a removed document goes no further; C4 rewrites the text of the documents it keeps and
   FineWeb sees that text), against llmwork's four steps in one pass (`apply_partition_steps`). Keep/remove
   agreement per document, disagreements listed.
2. Speed: the chain, documents per CPU-second of this process (`time.process_time`), median of K runs, llmwork
   over in-memory pandas partitions of 10,000 documents against datatrove's `filter()` calls, and the ratio.
3. With --pipeline, the full default pipeline (`llmwork clean`) on the sample corpus, end to end.

Rates are per core: the machine is shared, so wall-clock time measures the neighbours as much as the code. Arrow's
thread pool is limited to one thread so that llmwork uses one core like datatrove.
"""
import argparse
import ast
import gettext
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dask
import pandas as pd
import pyarrow as pa

from llmwork.clean import C4Quality, FineWebQuality, GopherQuality, GopherRepetition, apply_partition_steps, clean_corpus
from llmwork.io import sample_corpus_path

FILTERS = [("gopher_quality", GopherQuality, "GopherQualityFilter"), ("gopher_repetition", GopherRepetition, "GopherRepetitionFilter"),
           ("c4_quality", C4Quality, "C4QualityFilter"), ("fineweb_quality", FineWebQuality, "FineWebQualityFilter")]


def timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def sample_docs(n):
    with gzip.open(sample_corpus_path(), "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for _, line in zip(range(n), f)]


def docstring_docs(n, root=Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"):
    "Docstrings of at least 200 characters from the standard library's modules, classes and functions."
    out = []
    for path in sorted(root.glob("**/*.py")):
        try: tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError): continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 200: out.append(doc)
        if len(out) >= n: break
    return out[:n]


def gettext_docs(n, root=Path("/usr/share/locale"), per_doc=30):
    "Translated messages of the machine's gettext catalogues, 30 to a document, languages taken in turn."
    by_lang = {}
    for mo in sorted(root.glob("*/LC_MESSAGES/*.mo")):
        try:
            with open(mo, "rb") as f: catalog = gettext.GNUTranslations(f)._catalog
        except (OSError, UnicodeDecodeError, ValueError, IndexError): continue  # unreadable or malformed header: skipped
        msgs = [v for k, v in catalog.items() if k and isinstance(v, str) and v.strip()]
        docs = ["\n".join(msgs[i:i + per_doc]) for i in range(0, len(msgs), per_doc)]
        by_lang.setdefault(mo.parts[-3], []).extend(docs)
    out = []
    while len(out) < n and any(by_lang.values()):
        for lang in sorted(by_lang):
            if by_lang[lang] and len(out) < n: out.append(by_lang[lang].pop(0))
    return out, len(by_lang)


def datatrove_filter(cls_name):
    from datatrove.pipeline import filters
    return getattr(filters, cls_name)()


def datatrove_alone(texts, cls_name):
    from datatrove.data import Document
    from datatrove.pipeline.filters.base_filter import get_filter_result
    f = datatrove_filter(cls_name)
    return [None if keep else (reason or "removed") for keep, reason in
            (get_filter_result(f.filter(Document(text=t, id=str(i)))) for i, t in enumerate(texts))]


def datatrove_chain(texts):
    from datatrove.data import Document
    from datatrove.pipeline.filters.base_filter import get_filter_result
    chain = [(name, datatrove_filter(cls)) for name, _, cls in FILTERS]
    out = []
    for i, text in enumerate(texts):
        doc, verdict = Document(text=text, id=str(i)), None
        for name, f in chain:
            keep, reason = get_filter_result(f.filter(doc))  # C4 rewrites doc.text; FineWeb sees the new text
            if not keep:
                verdict = (name, reason or "removed")
                break
        out.append(verdict)
    return out


def llmwork_run(texts, steps, partition_rows=10_000):
    frame = pd.DataFrame({"id": [str(i) for i in range(len(texts))], "text": texts}).astype("string")
    verdict = {}
    for start in range(0, len(frame), partition_rows):
        _, removed, _ = apply_partition_steps(frame.iloc[start:start + partition_rows], steps)
        verdict.update(zip(removed["id"], zip(removed["step"], removed["reason"])))
    return [verdict.get(str(i)) for i in range(len(texts))]


def agreement(ref, got):
    return sum((a is None) == (b is None) for a, b in zip(ref, got)) / len(ref)


def show_disagreements(texts, ref, got, label, examples=2):
    bad = [i for i, (a, b) in enumerate(zip(ref, got)) if (a is None) != (b is None)]
    for i in bad[:examples]:
        print(f"      {label} doc {i}: datatrove {ref[i]}, llmwork {got[i]}: {texts[i][:120]!r}")


def bench_corpus(label, texts, repeat):
    print(f"\n== {label}: {len(texts):,} documents, {sum(len(t) for t in texts) / 1e6:.1f} M characters ==")
    row = {"corpus": label, "docs": len(texts)}
    for name, step, cls in FILTERS:
        want = [r and r.split(":")[0] for r in datatrove_alone(texts, cls)]
        got = [g and g[1] for g in llmwork_run(texts, [step()])]
        row[name] = agreement(want, got)
        print(f"  {name:<18} agreement {100 * row[name]:7.3f}%  (removed: datatrove {sum(w is not None for w in want):,}, "
              f"llmwork {sum(g is not None for g in got):,})")
        show_disagreements(texts, want, got, name)
    steps = [step() for _, step, _ in FILTERS]
    dt_runs = [timed(lambda: datatrove_chain(texts)) for _ in range(repeat)]
    lw_runs = [timed(lambda: llmwork_run(texts, steps)) for _ in range(repeat)]
    ref, got = dt_runs[0][0], lw_runs[0][0]
    row["chain"] = agreement(ref, got)
    dt_cpu, lw_cpu = statistics.median(r[1] for r in dt_runs), statistics.median(r[1] for r in lw_runs)
    row["dt_rate"], row["lw_rate"] = len(texts) / dt_cpu, len(texts) / lw_cpu
    print(f"  {'chain':<18} agreement {100 * row['chain']:7.3f}%  (removed: datatrove {sum(r is not None for r in ref):,}, "
          f"llmwork {sum(g is not None for g in got):,})")
    show_disagreements(texts, ref, got, "chain")
    print(f"  speed: datatrove {row['dt_rate']:8.0f} docs/CPU-s, llmwork {row['lw_rate']:8.0f} docs/CPU-s "
          f"-> {row['lw_rate'] / row['dt_rate']:.1f}x  (median of {repeat}; wall {dt_runs[0][2]:.1f} s vs {lw_runs[0][2]:.1f} s)")
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=3000, help="documents per corpus (default 3,000)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each chain; the median counts (default 3)")
    ap.add_argument("--pipeline", action="store_true", help="also time the full default pipeline on the sample corpus")
    args = ap.parse_args(argv)
    try:
        import datatrove  # noqa: F401
        import spacy  # noqa: F401
    except ImportError as e:
        sys.exit(f"bench/clean.py needs datatrove and spacy (pip install 'datatrove[processing]' spacy): {e}")
    pa.set_cpu_count(1)
    dask.config.set(scheduler="synchronous")
    datatrove_alone(["warm up the tokenizer. " * 3], "GopherQualityFilter")
    catalogues, n_langs = gettext_docs(args.docs)
    corpora = [("Debian descriptions", sample_docs(args.docs)), ("Python docstrings", docstring_docs(args.docs)),
               (f"gettext, {n_langs} languages", catalogues)]
    rows = [bench_corpus(label, texts, args.repeat) for label, texts in corpora]
    print("\n| corpus | docs | Gopher quality | Gopher repetition | C4 | FineWeb | chain | datatrove docs/CPU-s | llmwork docs/CPU-s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['corpus']} | {r['docs']:,} | " + " | ".join(f"{100 * r[k]:.2f}%" for k in
              ("gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality", "chain")) +
              f" | {r['dt_rate']:,.0f} | {r['lw_rate']:,.0f} | {r['lw_rate'] / r['dt_rate']:.1f}x |")
    if args.pipeline:
        with tempfile.TemporaryDirectory() as tmp:
            report, cpu, wall = timed(lambda: clean_corpus(sample_corpus_path(), Path(tmp) / "out"))
            print(f"\nfull default pipeline, sample corpus: {report['n_in']:,} docs in {cpu:.1f} s CPU ({wall:.1f} s wall), "
                  f"{report['n_in'] / cpu:,.0f} docs/CPU-s, kept {report['n_kept']:,}")


if __name__ == "__main__":
    main()
