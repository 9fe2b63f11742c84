"""Time llmwork's torch k-means against scikit-learn's KMeans (its default "lloyd" and its bounded "elkan") and
faiss-cpu's Kmeans on the same data. llmwork's single-process KMeans skips, with Hamerly's bounds, the rows
whose nearest center cannot have changed; its iterations are exact Lloyd iterations all the same.

All run the same number of Lloyd iterations (default 20) from the same initial centroids (greedy
k-means++ from scikit-learn, computed once) on all points, in this one process, on one thread each (torch,
scikit-learn's OpenMP and BLAS through threadpoolctl, faiss's OpenMP; `--threads` to change). The runs alternate
(llmwork, scikit-learn, faiss, llmwork, ...) `--runs` times (default 5), so a change in the machine's load hits
all alike; we print each run's seconds per iteration, the median of the per-run time ratios (llmwork / peer, < 1
means llmwork is faster) and each result's inertia recomputed exactly with the same float64 code, relative to
scikit-learn's.

    python bench/kmeans.py            # 200,000 x 128 float32, k=100, 20 iterations (CPU)
    python bench/kmeans.py --quick    # 20,000 x 32, k=20: a smoke run in a few seconds
    python bench/kmeans.py --device cuda --n 1000000 --d 256 --k 1000   # our CUDA path vs scikit-learn on CPU
"""
import argparse
import time

import numpy as np
import torch


def make_data(n, d, k, seed):
    from sklearn.datasets import make_blobs
    # overlapping blobs, so Lloyd keeps moving for all the iterations we time
    x, _ = make_blobs(n, n_features=d, centers=k, cluster_std=6.0, center_box=(-10, 10), random_state=seed)
    return x.astype(np.float32)


def exact_inertia(x, centers):
    from llmwork.cluster import exact_assignment
    return exact_assignment(torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(centers, dtype=np.float32)))[1]


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--runs", type=int, default=5, help="alternating runs of each implementation; the median ratio is printed")
    p.add_argument("--threads", type=int, default=1, help="threads for each implementation (default 1)")
    p.add_argument("--device", default="cpu", help="device for llmwork's k-means (cpu or cuda)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-faiss", action="store_true")
    p.add_argument("--quick", action="store_true", help="20,000 x 32, k=20, 3 runs")
    a = p.parse_args(argv)
    if a.quick: a.n, a.d, a.k, a.runs = 20_000, 32, 20, 3

    import sklearn.cluster
    from threadpoolctl import threadpool_limits
    from llmwork.cluster import KMeans
    torch.set_num_threads(a.threads)
    x = make_data(a.n, a.d, a.k, a.seed)
    init, _ = sklearn.cluster.kmeans_plusplus(x, a.k, random_state=a.seed)
    init = init.astype(np.float32)

    def ours():
        m = KMeans(a.k, init=init, max_iter=a.iters, tol=0, device=a.device, n_threads=a.threads).fit(x)
        if a.device.startswith("cuda"): torch.cuda.synchronize()
        return m.cluster_centers_, m.n_iter_

    def scikit():
        with threadpool_limits(a.threads):
            m = sklearn.cluster.KMeans(a.k, init=init, n_init=1, max_iter=a.iters, tol=0, algorithm="lloyd").fit(x)
        return m.cluster_centers_, m.n_iter_

    def scikit_elkan():  # scikit-learn's own bounded (exact) Lloyd, for comparison with our Hamerly bounds
        with threadpool_limits(a.threads):
            m = sklearn.cluster.KMeans(a.k, init=init, n_init=1, max_iter=a.iters, tol=0, algorithm="elkan").fit(x)
        return m.cluster_centers_, m.n_iter_

    runs = {"llmwork": ours, "scikit-learn": scikit, "sklearn elkan": scikit_elkan}
    if not a.no_faiss:
        try:
            import faiss
            faiss.omp_set_num_threads(a.threads)
            def faiss_run():
                km = faiss.Kmeans(a.d, a.k, niter=a.iters, seed=a.seed, verbose=False,
                                  max_points_per_centroid=10**9, min_points_per_centroid=1)  # all points, no subsampling
                km.train(x, init_centroids=init)
                return km.centroids, a.iters
            runs["faiss-cpu"] = faiss_run
        except ImportError:
            print("faiss not installed (pip install faiss-cpu): skipping it")
    print(f"data {a.n:,} x {a.d} float32, k={a.k}, {a.iters} Lloyd iterations from the same k-means++ centroids, "
          f"{a.threads} thread(s) each, llmwork device {a.device}, {a.runs} alternating runs")
    for fn in runs.values(): fn()  # warm-up: first-touch allocations, CUDA context, OpenMP pools

    per_iter, results = {name: [] for name in runs}, {}
    for r in range(a.runs):
        for name, fn in runs.items():
            seconds, results[name] = timed(fn)
            per_iter[name].append(seconds / results[name][1])
        print(f"  run {r + 1}: " + ", ".join(f"{n} {v[-1]:.4f} s/iter" for n, v in per_iter.items()), flush=True)

    ours_t = np.array(per_iter["llmwork"])
    reference = exact_inertia(x, results["scikit-learn"][0])
    print(f"{'':14s} {'median s/iter':>13s} {'iters':>5s} {'llmwork/peer (median of runs)':>30s} {'inertia vs sklearn':>19s}")
    for name, times in per_iter.items():
        ratio = float(np.median(ours_t / np.array(times)))
        inertia = exact_inertia(x, results[name][0])
        print(f"{name:14s} {np.median(times):13.4f} {results[name][1]:5d} {ratio:30.2f} {(inertia - reference) / reference:+19.2e}")
    ratio = float(np.median(ours_t / np.array(per_iter["scikit-learn"])))
    print(f"median ratio llmwork / scikit-learn per Lloyd iteration over {a.runs} alternating runs: {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
