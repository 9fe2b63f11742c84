"""Fuzzy dedup benchmark: llmwork vs datasketch (MinHash + MinHashLSH) on the same documents and parameters.

    python bench/fuzzy.py [--quick] [--docs N] [--memory] [--gpu] [--accuracy] [--scale [N ...]]

Both sides use the `nemo` preset's shingles (24-character, as UTF-8 bytes), 260 permutations and the same LSH
banding (bands x rows chosen by llmwork for threshold 0.8); rensa, whose bands must divide 260, uses NeMo's 20 x 13. Per core: llmwork runs on Dask's single-threaded
("sync") scheduler and datasketch in one Python thread. End to end = signatures + LSH + groups (llmwork also
verifies candidates by exact Jaccard; datasketch has no verification step). `--memory` measures peak RSS of
`find_duplicates` in fresh processes for growing corpus sizes. `--accuracy` scores grouping alone (precision as
the README defines it: each removed document against the kept document it is removed for; recall: true pairs whose
two documents end in the same group) on planted corpora, against brute-force exact Jaccard.
`--scale [N ...]` times `find_duplicates` end to end in a fresh process per size (default 16,000, 256,000 and
1,000,000; 10,000,000 is accepted, but needs about ten times the 1M run's time and memory) on corpora where 20% of
the documents are near-copies in clusters of 2-50 (`scaled_corpus`), and reports the peak RSS of the whole process
tree. rensa (`pip install rensa`) joins the comparison when installed.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd


def load_texts(n: int, seed: int = 0) -> pd.Series:
    from llmwork.io import sample_corpus_path
    texts = pd.read_json(sample_corpus_path(), lines=True)["text"].astype(str)
    copies, k, rng = [texts], 1, np.random.RandomState(seed)
    while sum(map(len, copies)) < n:  # beyond the sample: copies with words shuffled (new, distinct texts)
        copies.append(texts.map(lambda t: " ".join(rng.permutation(t.split()))))
        k += 1
    return pd.concat(copies, ignore_index=True).iloc[:n]


def datasketch_signatures(texts, num_perm, width):
    from datasketch import MinHash
    out = []
    for t in texts:
        m = MinHash(num_perm=num_perm)
        m.update_batch([t[i:i + width].encode("utf-8") for i in range(max(1, len(t) - width + 1))])
        out.append(m)
    return out


def datasketch_end_to_end(texts, num_perm, width, bands, rows):
    from datasketch import MinHashLSH
    sigs = datasketch_signatures(texts, num_perm, width)
    lsh = MinHashLSH(num_perm=num_perm, params=(bands, rows))
    for i, m in enumerate(sigs): lsh.insert(i, m)
    return removed_in_groups(len(sigs), ((i, j) for i, m in enumerate(sigs) for j in lsh.query(m)))


def removed_in_groups(n: int, pairs) -> int:
    "How many of `n` documents a union-find over `pairs` removes (all of each group but its smallest index)."
    parent = list(range(n))
    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for i, j in pairs:
        a, b = find(i), find(j)
        if a != b: parent[max(a, b)] = min(a, b)
    return sum(find(i) != i for i in range(n))


def rensa_end_to_end(texts, num_perm, width, bands, threshold=0.8):
    "rensa (Rust MinHash): signatures of the same 24-character shingles, its LSH, and groups of candidates it estimates similar."
    import rensa
    sigs = []
    for t in texts:
        m = rensa.RMinHash(num_perm, 42)
        m.update([t[i:i + width] for i in range(max(1, len(t) - width + 1))])
        sigs.append(m)
    lsh = rensa.RMinHashLSH(threshold, num_perm, bands)
    lsh.insert_many(sigs)
    pairs = ((i, j) for i, found in enumerate(lsh.query_all(sigs)) for j in found
             if j != i and sigs[i].jaccard(sigs[j]) >= threshold)  # rensa's verification: the estimated Jaccard
    return removed_in_groups(len(sigs), pairs)


def timed(fn, *args, **kw):
    start = time.perf_counter()
    result = fn(*args, **kw)
    return time.perf_counter() - start, result


def compare(n_docs: int):
    import dask
    import dask.dataframe as dd
    from llmwork import fuzzy as F
    preset = F.PRESETS["nemo"]
    bands, rows = F.choose_banding(preset.num_perm, 0.8)
    texts = load_texts(n_docs)
    F.minhash_signatures(texts.head(50), "nemo")  # compile / load the numba kernels outside the timings
    F.find_duplicates(dd.from_pandas(pd.DataFrame({"id": ["a", "b"], "text": ["x y z", "x y z"]}), npartitions=1))
    corpus = pd.DataFrame({"id": [f"doc{i:07d}" for i in range(len(texts))], "text": texts})
    print(f"{len(texts):,} documents ({texts.str.len().sum() / 1e6:.1f} M characters), preset nemo: {preset.num_perm} "
          f"permutations, {preset.width}-character shingles, LSH {bands} x {rows}; machine: {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")

    ours_sig, _ = timed(F.minhash_signatures, texts, "nemo", as_array=True)
    peer_sig, _ = timed(datasketch_signatures, texts, preset.num_perm, preset.width)
    print(f"signatures/s   llmwork {len(texts) / ours_sig:10,.0f}   datasketch {len(texts) / peer_sig:10,.0f}   "
          f"ratio {peer_sig / ours_sig:5.1f}x   (one thread each)")

    ddf = dd.from_pandas(corpus, npartitions=max(1, len(corpus) // 20_000))
    with dask.config.set(scheduler="sync"):
        ours_e2e, result = timed(F.find_duplicates, ddf, "nemo", 0.8, bands, rows)
    peer_e2e, peer_dups = timed(datasketch_end_to_end, texts, preset.num_perm, preset.width, bands, rows)
    print(f"end-to-end docs/s per core   llmwork {len(texts) / ours_e2e:10,.0f}   datasketch {len(texts) / peer_e2e:10,.0f}   "
          f"ratio {peer_e2e / ours_e2e:5.1f}x")
    print(f"  llmwork: {result.stats['n_duplicates']:,} duplicates after verification "
          f"({result.stats['n_candidate_pairs']:,} candidate pairs; signatures {result.stats['signatures_s']:.1f} s, "
          f"LSH {result.stats['lsh_s']:.1f} s, verify {result.stats['verify_s']:.1f} s)")
    print(f"  datasketch: {peer_dups:,} documents in LSH groups (no verification)")
    try:
        rensa_e2e, rensa_dups = timed(rensa_end_to_end, texts, preset.num_perm, preset.width, 20)
        print(f"end-to-end vs rensa (signatures, its LSH 20 x 13 -- its bands must divide 260 --, union of pairs whose "
              f"estimated Jaccard >= 0.8): rensa {len(texts) / rensa_e2e:10,.0f} docs/s, ratio {rensa_e2e / ours_e2e:5.1f}x; "
              f"rensa removes {rensa_dups:,}")
    except ImportError:
        print("rensa not installed (pip install rensa): skipping it")
    with dask.config.set(scheduler="threads", num_workers=2):
        two, _ = timed(F.find_duplicates, ddf.repartition(npartitions=max(2, ddf.npartitions)), "nemo", 0.8, bands, rows)
    print(f"end-to-end docs/s, llmwork on 2 threads: {len(texts) / two:,.0f}")
    return {"docs": len(texts), "sig_ratio": peer_sig / ours_sig, "e2e_ratio": peer_e2e / ours_e2e}


NEAR_RATES = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05)  # edit rates whose copies' Jaccard to the base spans 0.6 to 1


def F_module():
    from llmwork import fuzzy
    return fuzzy


def accuracy(n_base: int = 600, variants: int = 6):
    import dask
    import dask.dataframe as dd
    F = F_module()
    texts = pd.read_json(__import__("llmwork.io", fromlist=["x"]).sample_corpus_path(), lines=True)["text"]
    print(f"accuracy at Jaccard 0.8 (nemo, 32 x 8, verified), {n_base} bases x {variants} copies; "
          "precision = removed documents whose Jaccard to the document they are removed for is >= 0.8")
    print(f"  {'corpus':44s} {'span of copies':>15s} {'true pairs':>10s} {'grouping':>11s} {'recall':>7s} {'precision':>9s}")
    corpora = [("copies of the base, edit rates 0.5-5%", dict(rates=NEAR_RATES)),
               ("copies of the base, edit rates 0.5-25%", {}),
               ("copies of family members (chains), 0.5-5%", dict(rates=NEAR_RATES, chain=True))]
    for name, kw in corpora:
        corpus = F.planted_corpus(texts, n_base=n_base, variants=variants, seed=0, **kw)
        sets = F.shingle_sets(corpus["text"], "nemo")
        pos = pd.Series(np.arange(len(corpus)), index=corpus["id"].to_numpy())
        copies = corpus[corpus["edit"] != "none"]
        j = sets.jaccard(pos[copies["id"]].to_numpy(), pos[copies["parent"]].to_numpy())
        span = f"{np.quantile(j, 0.05):.2f}-{j.max():.2f}"
        for grouping in ("stars", "components"):
            with dask.config.set(scheduler="sync"):
                result = F.find_duplicates(dd.from_pandas(corpus, npartitions=2), "nemo", 0.8, grouping=grouping)
            s = F.score_dedup(corpus, result.duplicates, "nemo", 0.8)
            print(f"  {name:44s} {span:>15s} {s['true_pairs']:10,} {grouping:>11s} {s['recall']:7.4f} {s['precision']:9.4f}", flush=True)
    print("  span: 5th percentile to maximum of each copy's Jaccard to the document it was edited from. stars (grouping='stars'): "
          "each removed document shares a verified pair with its kept one; components (the default, which incremental "
          "ingestion reproduces): each connected component keeps its smallest id.")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_child(n_docs: int):
    import threading
    import tracemalloc
    import dask
    import dask.dataframe as dd
    from llmwork import fuzzy as F
    texts = load_texts(n_docs)
    corpus = pd.DataFrame({"id": [f"doc{i:07d}" for i in range(len(texts))], "text": texts})
    ddf = dd.from_pandas(corpus, npartitions=max(1, n_docs // 16_000))
    F.find_duplicates(dd.from_pandas(corpus.head(100), npartitions=1))  # kernels loaded
    base, peak, done = _rss_mb(), [0.0], threading.Event()
    def sample():  # RSS sampled every 20 ms: the peak of this run, not of the process's life
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.02)
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    tracemalloc.start()
    with dask.config.set(scheduler="sync"):
        result = F.find_duplicates(ddf, "nemo", 0.8, bands_per_iteration=8)
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    done.set(); watcher.join()
    print(json.dumps({"docs": n_docs, "text_mb": round(texts.str.len().sum() / 1e6, 1), "base_mb": round(base),
                      "peak_mb": round(peak[0]), "growth_mb": round(peak[0] - base), "traced_mb": round(traced),
                      "candidates": result.stats["n_candidate_pairs"], "seconds": result.stats["total_s"]}))


def memory(sizes):
    print("memory of find_duplicates (nemo, 32 x 8, 8 bands per shuffle, sync scheduler), a fresh process per size;")
    print("growth = peak RSS during the run minus RSS with the corpus loaded; traced = peak of numpy/Python allocations:")
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(n)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"  {r['docs']:>8,} docs {r['text_mb']:6.1f} MB text: growth {r['growth_mb']:5,} MB "
              f"({r['growth_mb'] * 2**20 / r['docs'] / 1e3:.1f} kB/doc), traced {r['traced_mb']:5,} MB, "
              f"{r['candidates']:,} candidate pairs, {r['seconds']:.1f} s", flush=True)
    return rows


def scaled_corpus(n_docs: int, share: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """`n_docs` documents: distinct texts (`load_texts`), and `share` of them near-copies in clusters of 2-50 (a base
    and its copies, each copy with 1-5% of its words deleted, inserted or swapped by `planted_corpus`'s `edit_text`)."""
    F = F_module()
    rng = np.random.RandomState(seed)
    n_copies = int(n_docs * share)
    sizes = []
    while sum(sizes) < n_copies: sizes.append(rng.randint(2, 51))
    texts = load_texts(n_docs - n_copies + len(sizes), seed).tolist()
    pool = " ".join(texts[:50]).split()
    out, base = texts[len(sizes):], texts[:len(sizes)]
    for b, size in zip(base, sizes):
        out.append(b)
        out += [F.edit_text(b, F.EDITS[rng.randint(3)], (0.01, 0.02, 0.05)[rng.randint(3)], rng, pool) for _ in range(size - 1)]
    out = out[:n_docs]
    return pd.DataFrame({"id": [f"doc{i:08d}" for i in range(len(out))], "text": out})


def _tree_rss_mb(pid: int) -> float:
    "RSS of a process and all its descendants (Dask scheduler and workers included)."
    import psutil
    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def scale_child(n_docs: int):
    import dask
    import dask.dataframe as dd
    F = F_module()
    corpus = scaled_corpus(n_docs)
    ddf = dd.from_pandas(corpus, npartitions=max(1, n_docs // 16_000))
    F.find_duplicates(dd.from_pandas(corpus.head(100), npartitions=1))  # kernels compiled or loaded outside the timing
    with dask.config.set(scheduler="sync"):
        seconds, result = timed(F.find_duplicates, ddf, "nemo", 0.8)
    print(json.dumps({"docs": n_docs, "seconds": seconds, "duplicates": result.stats["n_duplicates"],
                      "candidates": result.stats["n_candidate_pairs"], "verified": result.stats["n_verified_pairs"]}))


def scale(sizes):
    "Time `find_duplicates` per size in a fresh process, sampling the RSS of its whole process tree every 50 ms."
    print("scaling (nemo, 32 x 8, sync scheduler, 16k documents per partition; 20% of documents near-copies in "
          "clusters of 2-50; peak = RSS of the whole process tree, sampled every 50 ms):")
    for n in sizes:
        proc = subprocess.Popen([sys.executable, __file__, "--scale-child", str(n)], stdout=subprocess.PIPE, text=True)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _tree_rss_mb(proc.pid))
            time.sleep(0.05)
        r = json.loads(proc.stdout.read().strip().splitlines()[-1])
        print(f"  {n:>10,} docs {r['seconds']:8.1f} s {n / r['seconds']:8,.0f} docs/s peak {peak:7,.0f} MB "
              f"candidates {r['candidates']:,} verified {r['verified']:,} removed {r['duplicates']:,}", flush=True)


def gpu_signatures(n_docs: int):
    import cudf
    from llmwork import fuzzy as F
    texts = load_texts(n_docs)
    gpu = cudf.Series(texts)
    F.minhash_signatures(gpu.head(10), "nemo")
    t, _ = timed(lambda: F.minhash_signatures(gpu, "nemo").list.leaves.values.sum())
    c, _ = timed(F.minhash_signatures, texts, "nemo", as_array=True)
    print(f"signatures/s on CUDA (cuDF) {n_docs / t:,.0f} vs llmwork CPU one thread {n_docs / c:,.0f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3,000 documents, no memory sweep")
    p.add_argument("--docs", type=int, default=20_000, help="documents in the comparison (default 20,000)")
    p.add_argument("--memory", action="store_true", help="also measure peak memory for 16k..128k documents")
    p.add_argument("--gpu", action="store_true", help="also time signatures on CUDA through cuDF")
    p.add_argument("--accuracy", action="store_true", help="only the grouping's precision and recall on planted corpora")
    p.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--scale", nargs="*", type=int, help="time end to end at these sizes (default 16000 256000 1000000; "
                   "10000000 exists as an option: it needs about 10x the 1M run's time and memory)")
    p.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        sys.exit(0)
    if args.scale_child:
        scale_child(args.scale_child)
        sys.exit(0)
    if args.scale is not None:
        scale(args.scale or [16_000, 256_000, 1_000_000])
        sys.exit(0)
    if args.accuracy:
        accuracy()
        sys.exit(0)
    compare(3_000 if args.quick else args.docs)
    if args.memory and not args.quick: memory([16_000, 32_000, 64_000, 128_000])
    if args.gpu: gpu_signatures(3_000 if args.quick else args.docs)
    accuracy(150 if args.quick else 600)
