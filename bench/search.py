"""Benchmark llmwork.search on a corpus of >= 1M documents built by repeating the sample corpus with new ids.

    python bench/search.py [--quick] [--repeats 16] [--workdir /tmp] [--keep]

Measures, in one run and on the same data:
  1. layout: write time of llmwork's layout (write_corpus: zstd, sorted by id within each file, 10k-row row groups,
     manifest) against a plain Dask `to_parquet` (snappy, unsorted, one row group per file) and against the same
     layout sorted across files (one `sort_values` shuffle before writing); read time of an id lookup on each;
  2. id lookup latency (find_ids) against a full scan with pandas (read_parquet of id+text, then a mask);
  3. predicate queries with pushdown (find_where: row-group statistics + column projection) and without
     (pandas reads the columns, then filters); grep against pandas read + str.contains;
  4. nearest neighbours: exact (chunked torch matmul) and inverted-file (our k-means groups, nprobe) against
     faiss-cpu IndexFlatIP and IndexIVFFlat (same vectors, same centroids), recall@10 against exact.
Everything is written under a temporary folder in --workdir and deleted at the end (unless --keep).
"""
import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import torch

from llmwork.io import read_sample_corpus, write_corpus
from llmwork.search import StoredDataset, VectorIndex, as_vectors, find_ids, find_where, grep, open_dataset


def timed(f, *args, **kwargs):
    t = time.perf_counter()
    out = f(*args, **kwargs)
    return time.perf_counter() - t, out


def repeated_corpus(base: pd.DataFrame, repeats: int, seed: int = 0) -> dd.DataFrame:
    "`repeats` copies of `base` with new ids `r<k>:<id>`, in random order: every partition mixes all copies."
    n = len(base)
    order = np.random.default_rng(seed).permutation(repeats * n)
    n_words = base["text"].str.split().str.len().fillna(0).astype("int64")

    def part(k):
        rows = order[k * n:(k + 1) * n]
        out = base.iloc[rows % n].reset_index(drop=True)
        out["id"] = pd.Series([f"r{c:02d}:" for c in rows // n], dtype="str") + out["id"]
        out["n_words"] = n_words.iloc[rows % n].to_numpy()
        return out
    return dd.from_map(part, list(range(repeats)), meta=part(0).iloc[:0], enforce_metadata=False)


def parquet_files(path):
    "The Parquet files of a dataset folder: pandas/pyarrow cannot read a folder holding manifest.json."
    return sorted(str(p) for p in Path(path).rglob("*.parquet"))


def section(title):
    print(f"\n== {title}")


def bench_layout(ddf, root: Path, n_docs: int):
    section(f"layout: write {n_docs:,} documents")
    times = {}
    times["plain"], _ = timed(lambda: ddf.to_parquet(str(root / "plain"), write_index=False, write_metadata_file=False))
    times["llmwork"], _ = timed(write_corpus, ddf, root / "llmwork", step="bench")
    times["sorted"], _ = timed(write_corpus, ddf.sort_values("id"), root / "sorted", step="bench")
    for rows in (2_000, 1_000):  # smaller row groups: less to decode per lookup, more metadata
        times[f"rg{rows}"], _ = timed(write_corpus, ddf, root / f"rg{rows}", step="bench", row_group_size=rows)
    sizes = {k: sum(f.stat().st_size for f in (root / k).rglob("*.parquet")) / 2**20 for k in times}
    for k in times:
        print(f"  {k:8s} write {times[k]:6.1f} s   {sizes[k]:7.1f} MiB on disk"
              + ("" if k == "plain" else f"   ({times[k] / times['plain']:.2f}x the plain write)"))
    return {k: root / k for k in times}


def bench_lookups(paths, ids, n_lookups, n_scans):
    section(f"id lookup: {n_lookups} single-id lookups (warm: footers read once) vs a full pandas scan")
    rng = np.random.default_rng(1)
    wanted = [ids[i] for i in rng.choice(len(ids), n_lookups, replace=False)]
    datasets = {name: open_dataset(path) for name, path in paths.items()}
    for ds in datasets.values(): find_ids(ds, wanted[0])  # footers read once, as a notebook or the search box does
    lat, groups, total = {n: [] for n in paths}, {n: [] for n in paths}, {}
    for i in wanted:  # layouts take turns on each id, so that load from other processes hits them alike
        for name, ds in datasets.items():
            t, r = timed(find_ids, ds, i)
            assert r["id"].tolist() == [i]
            lat[name].append(t)
            groups[name].append(r.attrs["stats"]["row_groups_read"])
            total[name] = r.attrs["stats"]["row_groups_total"]
    result = {}
    for name, path in paths.items():
        cold, _ = timed(lambda: find_ids(StoredDataset(path), wanted[1]))  # footers read afresh
        result[name] = statistics.median(lat[name])
        print(f"  {name:8s} median {1e3 * result[name]:7.2f} ms  p90 {1e3 * np.percentile(lat[name], 90):7.2f} ms  "
              f"cold (open + lookup) {1e3 * cold:7.1f} ms   row groups read {np.mean(groups[name]):.1f} of {total[name]}")
    scans = []
    for i in wanted[:n_scans]:
        def pandas_scan():
            df = pd.read_parquet(parquet_files(paths["llmwork"]), columns=["id", "text"])
            return df[df["id"] == i]
        t, r = timed(pandas_scan)
        assert len(r) == 1
        scans.append(t)
        del r
        gc.collect()
    scan = statistics.median(scans)
    print(f"  pandas full scan (read_parquet id+text, mask): median {scan:.2f} s over {n_scans}")
    for i in wanted[:3]:
        t, r = timed(pd.read_parquet, parquet_files(paths["llmwork"]), columns=["id", "text"], filters=[("id", "==", i)])
        scans.append(t)
    print(f"  pandas read_parquet(filters=...) (pushdown, but footers re-read each call): {1e3 * t:.0f} ms")
    for name in result:
        print(f"  ratio full scan / lookup on the {name} layout: {scan / result[name]:.0f}x   (target >= 50x)")
    print(f"  ratio plain-layout lookup / llmwork-layout lookup: {result['plain'] / result['llmwork']:.1f}x")
    return result, scan


def bench_predicates(path):
    section("predicates: pushdown (row-group statistics + column projection) vs pandas read-then-filter")
    cases = [('"r01:debian:p" <= id < "r01:debian:q"', lambda d: (d.id >= "r01:debian:p") & (d.id < "r01:debian:q"), ["id"]),
             ('section == "games"', lambda d: d.section == "games", ["id", "section"]),
             ("n_words > 1000", lambda d: d.n_words > 1000, ["id", "n_words"])]
    for expr, mask, cols in cases:
        t_ours, r = timed(find_where, path, expr, limit=20)
        st = r.attrs["stats"]

        def pandas_filter():
            df = pd.read_parquet(parquet_files(path), columns=list(dict.fromkeys(["id", "text", *cols])))
            m = mask(df)
            return int(m.sum()), df[m].head(20)
        t_pd, (total, _) = timed(pandas_filter)
        assert total == r.attrs["total"], (expr, total, r.attrs["total"])
        gc.collect()
        print(f"  {expr:40s} {total:8,} matches  pushdown {1e3 * t_ours:8.1f} ms ({st['row_groups_read']}/{st['row_groups_total']} row groups)"
              f"   pandas {1e3 * t_pd:8.1f} ms   ratio {t_pd / t_ours:5.1f}x")
    section("grep: count + first 20 hits vs pandas read + str.contains")
    for pattern, kw in [("lorem ipsum", dict(case=False)), (r"\bGTK\+?\b", {})]:
        t_ours, r = timed(grep, path, pattern, limit=20, **kw)

        def pandas_grep():
            df = pd.read_parquet(parquet_files(path), columns=["id", "text"])
            return int(df["text"].str.contains(pattern, na=False, **kw).sum())
        t_pd, total = timed(pandas_grep)
        assert total == r.attrs["total"]
        print(f"  {pattern!r:20s} {total:8,} matches  ours {t_ours:6.2f} s   pandas {t_pd:6.2f} s   ratio {t_pd / t_ours:4.1f}x")


def document_vectors(base: pd.DataFrame, repeats: int, dim: int, sample: int, noise: float, seed: int = 0):
    "Embeddings of the base texts (llmwork.embed), each repeated with a little noise: near-duplicates, like the corpus."
    from llmwork.embed import HashedTfidfEmbedder
    texts = base["text"].fillna("").tolist()
    rng = np.random.default_rng(seed)
    t, embedder = timed(HashedTfidfEmbedder(dim=dim, seed=seed).fit, [texts[i] for i in rng.choice(len(texts), sample, replace=False)])
    t2, v = timed(embedder.transform, texts)
    print(f"  embedded {len(texts):,} texts at dim {dim} (fit {t:.0f} s, transform {t2:.0f} s); {repeats} noisy copies each")
    out = np.empty((repeats * len(v), dim), np.float32)
    for k in range(repeats):
        block = v + rng.normal(scale=noise / np.sqrt(dim), size=v.shape).astype(np.float32)
        out[k * len(v):(k + 1) * len(v)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def recall_at(found, truth, k=10):
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(found, truth)]))


def bench_vectors(vectors, n_queries, n_lists, nprobes, threads):
    import faiss
    section(f"nearest neighbours: {len(vectors):,} x {vectors.shape[1]} vectors, {n_queries} queries, k=10, {threads} thread(s)")
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    ids = np.arange(len(vectors)).astype(str).astype(object)
    index = VectorIndex(ids, vectors, device="cpu")
    rng = np.random.default_rng(2)
    picks = rng.choice(len(vectors), 2 * n_queries, replace=False)
    query_sets = {
        "documents": vectors[picks[:n_queries]],  # "documents like this one" (their near-copies are the answer)
        "mixtures": as_vectors(vectors[picks[:n_queries]] + vectors[picks[n_queries:]]).numpy(),  # between two topics: harder
    }
    t_build, _ = timed(index.build_ivf, n_lists=n_lists, seed=0)
    print(f"  our inverted file: k-means (llmwork.cluster, spherical, {64 * n_lists:,} sampled vectors) + assignment: {t_build:.1f} s, {n_lists} lists")
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(vectors.shape[1]), vectors.shape[1], n_lists, faiss.METRIC_INNER_PRODUCT)
    ivf.quantizer.add(index.ivf.centroids.numpy())  # the same centroids: same lists, a fair comparison of the scans
    ivf.is_trained = True
    t_add, _ = timed(ivf.add, vectors)
    print(f"  faiss IndexIVFFlat with the same centroids: add {t_add:.1f} s")
    position = {s: i for i, s in enumerate(ids)}
    for qname, q in query_sets.items():
        t_exact, (_, truth) = timed(index.search, q, 10)
        truth_rows = np.vectorize(position.get)(truth)
        t_flat, (_, flat_rows) = timed(flat.search, q, 10)
        print(f"  [{qname}] exact: ours {t_exact:.2f} s, faiss IndexFlatIP {t_flat:.2f} s (ratio faiss/ours {t_flat / t_exact:.2f}), "
              f"agreement {recall_at(flat_rows, truth_rows):.3f}")
        print(f"  [{qname}] {'nprobe':>6} {'ours s':>8} {'recall':>7} {'x exact':>8} {'faiss s':>8} {'recall':>7} {'ours/faiss':>10}")
        for nprobe in nprobes:
            t_ivf, (_, got) = timed(index.search, q, 10, nprobe)
            ivf.nprobe = nprobe
            t_fivf, (_, frows) = timed(ivf.search, q, 10)
            got_rows = np.vectorize(lambda s: position.get(s, -1))(got)
            print(f"  [{qname}] {nprobe:6d} {t_ivf:8.3f} {recall_at(got_rows, truth_rows):7.3f} {t_exact / t_ivf:8.1f} "
                  f"{t_fivf:8.3f} {recall_at(frows, truth_rows):7.3f} {t_ivf / t_fivf:10.2f}")
    single = query_sets["documents"][:50]
    for nprobe in (nprobes[len(nprobes) // 2],):
        t_one = [timed(index.search, single[i:i + 1], 10, nprobe)[0] for i in range(len(single))]
        ivf.nprobe = nprobe
        t_fone = [timed(ivf.search, single[i:i + 1], 10)[0] for i in range(len(single))]
        print(f"  single-query latency at nprobe={nprobe}: ours {1e3 * statistics.median(t_one):.2f} ms, "
              f"faiss {1e3 * statistics.median(t_fone):.2f} ms (median of {len(single)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200k documents and fewer queries (a few minutes)")
    ap.add_argument("--repeats", type=int, help="copies of the sample corpus (default 16: 1,022,480 documents)")
    ap.add_argument("--workdir", default="/tmp", help="where the temporary datasets go (deleted at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary datasets")
    ap.add_argument("--threads", type=int, default=1, help="torch/faiss threads for the vector part (default 1: per core)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["layout", "lookup", "predicates", "vectors"])
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 16)
    dask.config.set(scheduler="threads", num_workers=2)
    base = read_sample_corpus().compute().reset_index(drop=True)
    n_docs = repeats * len(base)
    print(f"llmwork.search benchmark: {n_docs:,} documents ({repeats} copies of the {len(base):,}-document sample corpus), "
          f"{os.cpu_count()} CPU cores, torch {torch.__version__}")
    root = Path(tempfile.mkdtemp(prefix="llmwork-bench-search-", dir=args.workdir))
    try:
        if {"layout", "lookup", "predicates"} - set(args.skip):
            ddf = repeated_corpus(base, repeats)
            paths = bench_layout(ddf, root, n_docs)
            ids = [f"r{k:02d}:{i}" for k in range(repeats) for i in base["id"]]
            if "lookup" not in args.skip:
                bench_lookups(paths, ids, n_lookups=50 if args.quick else 200, n_scans=2 if args.quick else 3)
            if "predicates" not in args.skip:
                bench_predicates(paths["llmwork"])
            for p in paths.values(): shutil.rmtree(p, ignore_errors=True)
        if "vectors" not in args.skip:
            vectors = document_vectors(base, repeats, dim=128, sample=5_000, noise=0.3)
            n_lists = 256 if args.quick else 1024
            bench_vectors(vectors, n_queries=200 if args.quick else 500, n_lists=n_lists,
                          nprobes=[4, 8, 16, 32, 64], threads=args.threads)
    finally:
        if not args.keep: shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
