"""Check llmwork's torch device paths against their CPU runs on one machine: k-means, the embedder's transform,
exact top-k search and the semantic-dedup kernel. Needs only numpy and torch (and pandas, which llmwork.backend
imports); the embedder check also needs scikit-learn and SciPy (the tokenizer runs on the host) and is skipped
without them. Dask and cuDF are not needed and not imported.

    python bench/gpu_torch_check.py                 # on a CUDA machine: CPU vs CUDA; elsewhere: "no CUDA device", exit 0
    python bench/gpu_torch_check.py --device cpu    # the same table with the "device" runs on the CPU (a dry run)
    python bench/gpu_torch_check.py --n 1000000 --d 128 --k 1000

Exit status 1 if any check disagrees.
"""
import argparse
import ast
import importlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(fn, device):
    "`(result, seconds)`, synchronizing CUDA around the call."
    if device.type == "cuda": torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda": torch.cuda.synchronize()
    return out, time.perf_counter() - t


def load_functions(module: str, names: list) -> dict:
    """The top-level functions `names` of llmwork's `module`: imported normally, or, when the module's own imports
    need what this machine lacks (Dask, pyarrow, ipywidgets), compiled alone from its source with numpy and torch."""
    try:
        mod = importlib.import_module(f"llmwork.{module}")
        return {n: getattr(mod, n) for n in names} | {"_how": "import"}
    except ImportError as e:
        why = e.name
    tree = ast.parse((ROOT / "llmwork" / f"{module}.py").read_text())
    wanted = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    namespace = {"np": np, "torch": torch, "__name__": f"llmwork_{module}_light"}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), f"llmwork/{module}.py", "exec"), namespace)
    return {n: namespace[n] for n in names} | {"_how": f"source (import needs {why})"}


def blobs(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, size=(k, d)).astype(np.float32)
    labels = rng.integers(0, k, size=n)
    return (centers[labels] + rng.normal(scale=1.0, size=(n, d))).astype(np.float32)


def check_kmeans(args, device):
    from llmwork.cluster import KMeans, kmeans_plusplus
    x = blobs(args.n, args.d, args.k)
    init = kmeans_plusplus(torch.from_numpy(x[:20_000]), args.k, torch.Generator().manual_seed(0)).numpy()
    make = lambda dev: KMeans(args.k, init=init, max_iter=args.iters, tol=0, device=dev)
    cpu, t_cpu = timed(lambda: make("cpu").fit(x), torch.device("cpu"))
    dev, t_dev = timed(lambda: make(str(device)).fit(torch.from_numpy(x).to(device)), device)
    agree = float((cpu.labels_ == dev.labels_).mean())
    rel = abs(dev.inertia_ / cpu.inertia_ - 1)
    ok = agree >= 0.9999 and rel < 1e-4
    return ok, f"{args.n:,} x {args.d}, k={args.k}, {args.iters} iterations", t_cpu, t_dev, f"labels {agree:.6f} equal, inertia rel. diff {rel:.1e}"


def check_embedder(args, device):
    try:
        import scipy.sparse, sklearn  # noqa: F401  (the host tokenizer)
    except ImportError as e:
        return None, f"skipped: needs {e.name}", 0.0, 0.0, ""
    from llmwork.embed import HashedTfidfEmbedder
    rng = np.random.default_rng(0)
    words = np.array(["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=rng.integers(2, 9))) for _ in range(3000)])
    texts = [" ".join(rng.choice(words, size=rng.integers(5, 60))) for _ in range(args.docs)]
    embedder = HashedTfidfEmbedder(dim=64, n_features=2**16, device="cpu").fit(texts[:5000])
    cpu, t_cpu = timed(lambda: embedder.transform(texts), torch.device("cpu"))
    dev, t_dev = timed(lambda: embedder.transform_on(texts, device), device)
    diff = float(np.abs(dev.cpu().numpy() - cpu).max())
    return diff <= 1e-5, f"{args.docs:,} texts -> 64-d (hashing on the host)", t_cpu, t_dev, f"max |diff| {diff:.1e} (tolerance 1e-5)"


def check_topk(args, device):
    fns = load_functions("search", ["as_vectors", "_merge_topk", "exact_topk"])
    as_vectors, exact_topk = fns["as_vectors"], fns["exact_topk"]
    rng = np.random.default_rng(1)
    base, queries = as_vectors(rng.normal(size=(args.n, args.d))), as_vectors(rng.normal(size=(1000, args.d)))
    (s_cpu, r_cpu), t_cpu = timed(lambda: exact_topk(queries, base, 10), torch.device("cpu"))
    on_dev, q_dev = base.to(device), queries.to(device)
    (s_dev, r_dev), t_dev = timed(lambda: exact_topk(q_dev, on_dev, 10), device)
    same = float((r_dev.cpu() == r_cpu).all(dim=1).float().mean())
    gap = float((s_dev.cpu() - s_cpu).abs().max())
    return same == 1.0, f"1,000 queries x {args.n:,} vectors, k=10 ({fns['_how']})", t_cpu, t_dev, f"ids equal for {same:.4f} of queries, max score diff {gap:.1e}"


def check_semantic(args, device):
    from llmwork.cluster import semantic_duplicates, semantic_duplicates_torch
    rng = np.random.default_rng(2)
    base = rng.normal(size=(args.dups // 4, 32)).astype(np.float32)
    x = np.concatenate([base + rng.normal(scale=s, size=base.shape).astype(np.float32) for s in (0, 0.01, 0.05, 1.0)])
    x = x[rng.permutation(len(x))]
    ids = [f"{i:07d}" for i in range(len(x))]
    cpu, t_cpu = timed(lambda: semantic_duplicates(ids, x, 0.99), torch.device("cpu"))
    dev, t_dev = timed(lambda: semantic_duplicates_torch(torch.from_numpy(x).to(device), 0.99).cpu().numpy(), device)
    same = bool((cpu == dev).all())
    return same, f"{len(x):,} vectors in one cluster, cosine > 0.99", t_cpu, t_dev, f"identical removals: {same} ({int((cpu >= 0).sum())} removed)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="the device to check against the CPU (default cuda; cpu for a dry run)")
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--docs", type=int, default=20_000)
    p.add_argument("--dups", type=int, default=8_000)
    p.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    args = p.parse_args(argv)
    if args.quick: args.n, args.k, args.docs, args.dups, args.iters = 20_000, 20, 3_000, 2_000, 10
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (run with --device cpu for a dry run on the CPU)")
        return 0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, device {device} ({name})")
    rows = []
    for label, check in [("k-means", check_kmeans), ("embedder transform", check_embedder),
                         ("exact top-k search", check_topk), ("semantic dedup kernel", check_semantic)]:
        rows.append((label, *check(args, device)))
    heavy = [m for m in ("dask", "distributed", "cudf", "dask_cudf") if m in sys.modules]
    print(f"\n{'check':<22} {'agree':<6} {'cpu s':>8} {'device s':>9} {'ratio':>7}  size; agreement")
    for label, ok, size, t_cpu, t_dev, detail in rows:
        mark = "skip" if ok is None else ("yes" if ok else "NO")
        ratio = f"{t_dev / t_cpu:7.3f}" if t_cpu and t_dev else "      -"
        print(f"{label:<22} {mark:<6} {t_cpu:8.3f} {t_dev:9.3f} {ratio}  {size}; {detail}")
    print(f"\nmodules imported that a torch-only machine lacks: {', '.join(heavy) or 'none (no Dask, no cuDF)'}")
    return 1 if any(ok is False for _, ok, *_ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
