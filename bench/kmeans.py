"""Time llmwork's torch k-means against scikit-learn's KMeans and faiss-cpu's Kmeans on the same data.

All three run the same number of Lloyd iterations (default 20) from the same initial centroids (greedy
k-means++ from scikit-learn, computed once) on all points, in this one process. We print seconds per
iteration, time ratios (llmwork / peer, < 1 means llmwork is faster) and each result's inertia recomputed
exactly with the same float64 code, relative to scikit-learn's.

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


def best_of(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs for each implementation")
    p.add_argument("--device", default="cpu", help="device for llmwork's k-means (cpu or cuda)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-faiss", action="store_true")
    p.add_argument("--quick", action="store_true", help="20,000 x 32, k=20, one repeat")
    a = p.parse_args(argv)
    if a.quick: a.n, a.d, a.k, a.repeats = 20_000, 32, 20, 1

    import sklearn.cluster
    from llmwork.cluster import KMeans
    x = make_data(a.n, a.d, a.k, a.seed)
    init, _ = sklearn.cluster.kmeans_plusplus(x, a.k, random_state=a.seed)
    init = init.astype(np.float32)
    print(f"data {a.n:,} x {a.d} float32, k={a.k}, {a.iters} Lloyd iterations from the same k-means++ centroids, "
          f"torch threads {torch.get_num_threads()}, llmwork device {a.device}, best of {a.repeats}")

    results = {}
    def ours():
        m = KMeans(a.k, init=init, max_iter=a.iters, tol=0, device=a.device).fit(x)
        if a.device.startswith("cuda"): torch.cuda.synchronize()
        return m.cluster_centers_, m.n_iter_
    if a.device.startswith("cuda"): ours()  # warm up CUDA context and kernels
    results["llmwork"] = best_of(ours, a.repeats)

    def scikit():
        m = sklearn.cluster.KMeans(a.k, init=init, n_init=1, max_iter=a.iters, tol=0, algorithm="lloyd").fit(x)
        return m.cluster_centers_, m.n_iter_
    results["scikit-learn"] = best_of(scikit, a.repeats)

    if not a.no_faiss:
        try:
            import faiss
            def faiss_run():
                km = faiss.Kmeans(a.d, a.k, niter=a.iters, seed=a.seed, verbose=False,
                                  max_points_per_centroid=10**9, min_points_per_centroid=1)  # all points, no subsampling
                km.train(x, init_centroids=init)
                return km.centroids, a.iters
            results["faiss-cpu"] = best_of(faiss_run, a.repeats)
        except ImportError:
            print("faiss not installed (pip install faiss-cpu): skipping it")

    reference = exact_inertia(x, results["scikit-learn"][1][0])
    ours_time, ours_iters = results["llmwork"][0], results["llmwork"][1][1]
    print(f"{'':14s} {'seconds':>8s} {'iters':>5s} {'s/iter':>8s} {'llmwork/peer':>13s} {'inertia vs sklearn':>19s}")
    for name, (seconds, (centers, iters)) in results.items():
        inertia = exact_inertia(x, centers)
        ratio = (ours_time / ours_iters) / (seconds / iters)
        print(f"{name:14s} {seconds:8.3f} {iters:5d} {seconds / iters:8.4f} {ratio:13.2f} {(inertia - reference) / reference:+19.2e}")


if __name__ == "__main__":
    main()
