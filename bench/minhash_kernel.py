"""The MinHash signature kernel against the SIMD limit of its permutation loop, on the same shingle hashes.

    python bench/minhash_kernel.py [--docs 20000] [--runs 5]

The corpus is the first `--docs` documents of the sample corpus with the `nemo` preset (24-character shingles,
260 permutations). Each operation is one multiply-add-min of one shingle hash with one permutation.

- limit: the best simple SIMD loops for the permutation minimum alone, on hashes computed beforehand (so no
  Murmur3): llmwork's own permutation-innermost loop (`_permutation_min`: uint32 lanes, `vpmulld`/`vpminud` on
  AVX2), and a register-blocked form (16 permutations held in locals while all of a row's hashes stream past);
  the faster of the two is the limit.
- ours: `_minhash_spans`, the whole kernel: Murmur3 of every 24-character window and the permutation minimum.

Runs alternate (limit, blocked, ours, ...) `--runs` times on one thread; the fraction printed is the median of the
per-run ratios limit time / our time (1.0 would mean hashing costs nothing). The machine's load average is printed
with it: on a shared machine every figure moves, the fraction much less than the rates.
"""
import argparse
import os
import time

import numba
import numpy as np
import pandas as pd

from llmwork.fuzzy import _permutation_min, _row_hashes

BLOCK = 16


def blocked_min():
    "The register-blocked loop: BLOCK permutations in locals, every hash of the row streamed past them."
    lines = [f"        a{i} = a[j0 + {i}]; b{i} = b[j0 + {i}]; m{i} = M" for i in range(BLOCK)]
    lines += ["        for k in range(s, e):", "            h = hashes[k]"]
    lines += [f"            m{i} = min(m{i}, np.uint32(h * a{i} + b{i}))" for i in range(BLOCK)]
    lines += [f"        out[r, j0 + {i}] = m{i}" for i in range(BLOCK)]
    src = ("def blocked(hashes, row_offsets, a, b, out):\n"
           "    for r in range(out.shape[0]):\n"
           "      s, e = row_offsets[r], row_offsets[r + 1]\n"
           f"      for j0 in range(0, out.shape[1] - {BLOCK} + 1, {BLOCK}):\n" + "\n".join(lines) + "\n")
    ns = {"np": np, "M": np.uint32(0xFFFFFFFF)}
    exec(src, ns)
    return numba.njit(nogil=True, boundscheck=False)(ns["blocked"])


@numba.njit(nogil=True)
def all_hashes(data, row_offsets, starts, ends, seed, out):
    for r in range(len(row_offsets) - 1):
        s, e = row_offsets[r], row_offsets[r + 1]
        if e > s: _row_hashes(data, starts, ends, s, e, seed, out[s:e])


@numba.njit(nogil=True)
def simple_min(hashes, row_offsets, a, b, out):
    for r in range(out.shape[0]):
        _permutation_min(hashes[row_offsets[r]:], row_offsets[r + 1] - row_offsets[r], a, b, out[r])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    from llmwork import fuzzy as F
    from llmwork.io import sample_corpus_path
    texts = pd.read_json(sample_corpus_path(), lines=True)["text"].astype(str).iloc[:args.docs]
    preset = F.PRESETS["nemo"]
    a, b = F.permutation_parameters(preset.num_perm, preset.seed)
    sp = F._arrow_spans(F._to_arrow(texts, False), preset.width, False)
    sp.nonempty[:] = np.diff(sp.row_offsets) > 0  # rows with no shingle are skipped alike by all three
    seed = np.uint64(a[0])
    hashes = np.empty(sp.row_offsets[-1], np.uint32)
    all_hashes(sp.data, sp.row_offsets, sp.starts, sp.ends, seed, hashes)
    ops = len(hashes) * preset.num_perm
    outs = {k: np.zeros((len(texts), preset.num_perm), np.uint32) for k in ("limit", "blocked", "ours")}
    blocked = blocked_min()
    run = {"limit": lambda: simple_min(hashes, sp.row_offsets, a, b, outs["limit"]),
           "blocked": lambda: blocked(hashes, sp.row_offsets, a, b, outs["blocked"]),
           "ours": lambda: F._minhash_spans(sp.data, sp.row_offsets, sp.starts, sp.ends, sp.nonempty, a, b, seed, outs["ours"])}
    for f in run.values(): f()  # compile outside the timings
    full = preset.num_perm // BLOCK * BLOCK
    assert np.array_equal(outs["limit"], outs["ours"]) and np.array_equal(outs["blocked"][:, :full], outs["ours"][:, :full])
    times = {k: [] for k in run}
    for _ in range(args.runs):
        for k, f in run.items():
            t = time.perf_counter(); f(); times[k].append(time.perf_counter() - t)
    print(f"{len(texts):,} documents, {len(hashes):,} shingles x {preset.num_perm} permutations = {ops / 1e9:.2f} G operations; "
          f"one thread, {args.runs} alternating runs, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for k, name in (("limit", "limit: permutation-innermost uint32 min, hashes given"),
                    ("blocked", f"limit: register-blocked ({BLOCK} permutations in locals), hashes given"),
                    ("ours", "ours: Murmur3 of each window + permutation min")):
        width = full if k == "blocked" else preset.num_perm
        print(f"  {name:66s} {len(hashes) * width / np.median(times[k]) / 1e9:6.2f} G ops/s (median)")
    best = np.minimum(np.array(times["limit"]), np.array(times["blocked"]) * preset.num_perm / full)
    fraction = np.median(best / np.array(times["ours"]))
    print(f"kernel fraction of the SIMD limit: {fraction:.2f} (median of per-run limit time / our time)")
    return fraction


if __name__ == "__main__":
    main()
