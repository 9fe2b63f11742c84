"k-means cross-checked against scikit-learn, Dask version against the single-process one, determinism, bad input."
import dask
import dask.array as da
import numpy as np
import pytest
import sklearn.cluster
import torch
from sklearn.datasets import load_digits, load_iris, make_blobs
from sklearn.metrics import adjusted_rand_score

from llmwork.cluster import DaskKMeans, KMeans


@pytest.mark.parametrize("name,k", [("iris", 3), ("digits", 10), ("blobs", 12)])
def test_inertia_within_one_percent_of_sklearn(name, k):
    if name == "iris": x = load_iris().data
    elif name == "digits": x = load_digits().data
    else: x = make_blobs(4000, n_features=16, centers=12, cluster_std=2.0, random_state=3)[0]
    ours = KMeans(k, n_init=3, seed=0).fit(x)
    theirs = sklearn.cluster.KMeans(k, n_init=3, random_state=0).fit(x)
    assert ours.inertia_ <= 1.01 * theirs.inertia_, (ours.inertia_, theirs.inertia_)
    assert ours.cluster_centers_.shape == (k, x.shape[1]) and ours.labels_.shape == (len(x),)
    # inertia_ is the exact sum of squared distances to the assigned centers
    exact = ((x - ours.cluster_centers_[ours.labels_].astype(np.float64)) ** 2).sum()
    assert ours.inertia_ == pytest.approx(exact, rel=1e-4)


def test_labels_agree_on_well_separated_blobs():
    x, truth = make_blobs(5000, n_features=10, centers=8, cluster_std=0.6, random_state=7)
    ours = KMeans(8, seed=1).fit(x)
    assert adjusted_rand_score(truth, ours.labels_) >= 0.99
    assert adjusted_rand_score(sklearn.cluster.KMeans(8, random_state=1).fit(x).labels_, ours.labels_) >= 0.99


def test_same_init_follows_sklearns_lloyd_path():
    x = load_digits().data.astype(np.float32)
    init = x[np.random.default_rng(5).choice(len(x), 15, replace=False)]
    ours = KMeans(15, init=init, max_iter=40, tol=1e-4).fit(x)
    theirs = sklearn.cluster.KMeans(15, init=init, n_init=1, max_iter=40, tol=1e-4, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, atol=1e-3)
    assert adjusted_rand_score(theirs.labels_, ours.labels_) == 1.0
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-5)


def test_deterministic_for_a_seed_and_seed_matters():
    x = make_blobs(2000, n_features=6, centers=20, cluster_std=3.0, random_state=0)[0]
    a, b = KMeans(20, seed=4).fit(x), KMeans(20, seed=4).fit(x)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert not np.array_equal(KMeans(20, seed=5).fit(x).cluster_centers_, a.cluster_centers_)


def test_thread_count_and_chunking_do_not_change_the_result():
    x = make_blobs(3000, n_features=5, centers=7, random_state=2)[0]
    a = KMeans(7, seed=0, n_threads=1).fit(x)
    b = KMeans(7, seed=0, n_threads=2, chunk_size=333).fit(x)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, atol=1e-5)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert torch.get_num_threads() >= 1  # the thread setting is restored


def test_empty_cluster_is_reseeded():
    x = make_blobs(600, n_features=3, centers=4, cluster_std=0.5, random_state=0)[0].astype(np.float32)
    init = np.vstack([x[:3], [[500, 500, 500]]]).astype(np.float32)
    m = KMeans(4, init=init, max_iter=30).fit(x)
    assert np.bincount(m.labels_, minlength=4).min() > 0
    theirs = sklearn.cluster.KMeans(4, init=init, n_init=1, max_iter=30, algorithm="lloyd").fit(x)
    assert m.inertia_ == pytest.approx(theirs.inertia_, rel=1e-4)


def test_tol_stops_early_like_sklearn():
    x = load_digits().data
    init = x[:10]
    ours = KMeans(10, init=init, tol=1e-2).fit(x)
    theirs = sklearn.cluster.KMeans(10, init=init, n_init=1, tol=1e-2, algorithm="lloyd").fit(x)
    assert ours.n_iter_ == theirs.n_iter_


def test_random_init_and_predict():
    x, truth = make_blobs(1500, n_features=4, centers=5, cluster_std=0.4, random_state=9)
    m = KMeans(5, init="random", seed=2).fit(x)
    assert adjusted_rand_score(truth, m.labels_) >= 0.99
    np.testing.assert_array_equal(m.predict(x), m.labels_)
    np.testing.assert_array_equal(m.fit_predict(x), m.labels_)


def test_spherical_centers_are_unit_and_cosine_inertia():
    x = make_blobs(1000, n_features=6, centers=4, random_state=1, center_box=(1, 20))[0]
    m = KMeans(4, spherical=True, seed=0).fit(x)
    np.testing.assert_allclose(np.linalg.norm(m.cluster_centers_, axis=1), 1, atol=1e-5)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert m.inertia_ == pytest.approx(float((2 - 2 * (unit * m.cluster_centers_[m.labels_]).sum(1)).sum()), rel=1e-3)


def test_dask_equals_single_process_on_the_same_init():
    x = make_blobs(3000, n_features=8, centers=10, cluster_std=2.5, random_state=4)[0].astype(np.float32)
    init = x[:10]
    single = KMeans(10, init=init, max_iter=50).fit(x)
    with dask.config.set(scheduler="threads"):
        spread = DaskKMeans(10, init=init, max_iter=50).fit(da.from_array(x, chunks=(700, 8)))
    np.testing.assert_allclose(spread.cluster_centers_, single.cluster_centers_, atol=1e-4)
    np.testing.assert_array_equal(spread.labels_, single.labels_)
    assert spread.n_iter_ == single.n_iter_
    assert spread.inertia_ == pytest.approx(single.inertia_, rel=1e-6)


def test_dask_dataframe_with_vector_column_and_sampled_init():
    import dask.dataframe as dd
    import pandas as pd
    from llmwork.embed import vectors_to_series
    x, truth = make_blobs(2000, n_features=6, centers=5, cluster_std=0.3, random_state=5)
    frame = pd.DataFrame({"id": [f"d{i}" for i in range(2000)]})
    frame["embedding"] = vectors_to_series(x.astype(np.float32))
    with dask.config.set({"scheduler": "synchronous", "dataframe.convert-string": False}):
        m = DaskKMeans(5, seed=0, init_sample_size=300).fit(dd.from_pandas(frame, npartitions=4))
        m2 = DaskKMeans(5, seed=0, init_sample_size=300).fit(dd.from_pandas(frame, npartitions=4))
    assert adjusted_rand_score(truth, m.labels_) >= 0.99
    np.testing.assert_array_equal(m.cluster_centers_, m2.cluster_centers_)
    with pytest.raises(ValueError, match="no 'vectors' vector column"):
        DaskKMeans(5, column="vectors").fit(dd.from_pandas(frame, npartitions=2))
    with pytest.raises(ValueError, match="holds strings"):  # from_pandas with convert-string on
        DaskKMeans(5).fit(dd.from_pandas(frame, npartitions=2))


def test_dask_on_a_local_cluster_with_empty_cluster_reseeding():
    from distributed import Client
    x = make_blobs(1200, n_features=3, centers=4, cluster_std=0.5, random_state=0)[0].astype(np.float32)
    init = np.vstack([x[:3], [[500, 500, 500]]]).astype(np.float32)
    single = KMeans(4, init=init, max_iter=30).fit(x)
    # centers are scattered (broadcast) to the workers each iteration when a distributed client is running
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None):
        spread = DaskKMeans(4, init=init, max_iter=30).fit(da.from_array(x, chunks=(400, 3)))
    np.testing.assert_allclose(spread.cluster_centers_, single.cluster_centers_, atol=1e-4)


def test_bad_input():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="should be >= n_clusters=20"):
        KMeans(20).fit(x)
    with pytest.raises(ValueError, match="Unknown init"):
        KMeans(2, init="foo").fit(x)
    with pytest.raises(ValueError, match="2-D array"):
        KMeans(2).fit(np.zeros(4))
    with pytest.raises(ValueError, match="Dask DataFrame with a vector column or a 2-D Dask array"):
        DaskKMeans(2).fit(x)


# ---- semantic deduplication -------------------------------------------------------------------------------

def _greedy_reference(ids, vectors, threshold):
    "Plain-Python SemDeDup: visit in id order, drop a document if a kept one is more similar than threshold."
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    kept, covering = [], {}
    for i in order:
        for j in kept:
            if float(unit[i] @ unit[j]) > threshold:
                covering[i] = j
                break
        else:
            kept.append(i)
    return [covering.get(i, -1) for i in range(len(ids))]


def test_semantic_duplicates_match_a_plain_python_reference():
    from llmwork.cluster import semantic_duplicates
    rng = np.random.default_rng(3)
    base = rng.normal(size=(60, 16)).astype(np.float32)
    # plant near-copies and chains of near-copies
    copies = base[rng.integers(0, 60, 90)] + rng.normal(scale=0.08, size=(90, 16)).astype(np.float32)
    vectors = np.vstack([base, copies])
    ids = [f"doc{int(i):04d}" for i in rng.permutation(len(vectors))]
    for threshold in (0.99, 0.97, 0.9):
        ours = semantic_duplicates(ids, vectors, threshold, block_rows=17).tolist()
        reference = _greedy_reference(ids, vectors, threshold)
        # the reference takes the first kept document in id order; so does ours
        assert ours == reference, threshold
    assert sum(c >= 0 for c in ours) > 50


def _corpus(n=1200):
    import llmwork
    from pathlib import Path
    import pandas as pd
    return pd.read_json(Path(llmwork.__file__).parent / "data" / "debian_descriptions.jsonl.gz", lines=True, nrows=n)


def test_semantic_dedup_step_in_a_pipeline(tmp_path):
    import json
    import dask.dataframe as dd
    import pandas as pd
    from llmwork.clean import ExactDedup, Pipeline, step_from_config
    from llmwork.cluster import SemanticDedup
    docs = _corpus()
    step = step_from_config({"step": "semantic_dedup", "eps": 0.03, "n_clusters": 12, "dim": 32, "seed": 0})
    assert isinstance(step, SemanticDedup) and step.eps == 0.03
    with dask.config.set(scheduler="synchronous"):
        report = Pipeline([ExactDedup(), step]).run(dd.from_pandas(docs, npartitions=3), tmp_path / "out")
    read = lambda name: pd.concat([pd.read_parquet(f) for f in sorted((tmp_path / "out" / name).glob("*.parquet"))])
    kept, removed = read("kept"), read("removed")
    semantic = removed[removed.step == "semantic_dedup"]
    assert report["n_in"] == 1200 and report["n_kept"] == len(kept) == 1200 - len(removed)
    assert report["steps"][-1]["name"] == "semantic_dedup"
    assert report["steps"][-1]["reasons"] == {"semantic_duplicate": len(semantic)} and len(semantic) > 0
    assert set(semantic.duplicate_of) <= set(kept.id)
    assert (semantic.duplicate_of < semantic.id).all()
    assert json.loads(json.dumps(step.config())) == step.config()


def test_semantic_dedup_is_deterministic_and_uses_an_existing_vector_column():
    import dask.dataframe as dd
    from llmwork.cluster import SemanticDedup
    from llmwork.embed import HashedTfidfEmbedder, embed_corpus, series_to_vectors
    docs = _corpus(800)
    embedder = HashedTfidfEmbedder(dim=24, n_features=2**12, seed=0).fit(docs.text)
    embedded = embed_corpus(dd.from_pandas(docs, npartitions=2), embedder)
    with dask.config.set(scheduler="synchronous"):
        runs = [SemanticDedup(eps=0.05, n_clusters=8).run(embedded) for _ in range(2)]
        removed = [r[1].compute() for r in runs]
        kept = runs[0][0].compute()
    assert removed[0].id.tolist() == removed[1].id.tolist() and len(removed[0]) > 0
    vectors = dict(zip(kept.id, series_to_vectors(kept.embedding)))
    for _, row in removed[0].iterrows():
        assert float(np.asarray(row.embedding) @ vectors[row.duplicate_of]) > 0.95 - 1e-5


def test_semantic_dedup_bad_eps():
    import dask.dataframe as dd
    from llmwork.cluster import SemanticDedup
    with pytest.raises(ValueError, match="eps must be between 0 and 1"):
        SemanticDedup(eps=1.5).run(dd.from_pandas(_corpus(20), npartitions=1))


# ---- cluster summaries ------------------------------------------------------------------------------------

def test_cluster_summaries_exact_counts_and_removed_shares():
    import pandas as pd
    from llmwork.cluster import cluster_summaries
    docs = pd.DataFrame({"id": [f"d{i}" for i in range(9)],
                         "text": ["python module parsing", "python library bindings", "python module tests",
                                  "kernel firmware driver", "kernel firmware blobs", "firmware loader kernel",
                                  "game of chess", "chess engine game", "  "],
                         "cluster": [0, 0, 0, 1, 1, 1, 2, 2, 2]})
    removed = pd.DataFrame({"id": ["r1", "r2", "r3"], "text": ["a", "b", "c"], "cluster": [0, 0, 2],
                            "step": ["exact_dedup", "gopher_quality", "exact_dedup"]})
    s = cluster_summaries(docs, removed=removed, n_terms=2, n_samples=2).set_index("cluster")
    assert s["size"].tolist() == [3, 3, 3]
    assert s.loc[0, "top_terms"][0] == "python" and s.loc[1, "top_terms"][:2] == ["firmware", "kernel"]
    assert s.loc[0, "removed_share_exact_dedup"] == pytest.approx(1 / 5)
    assert s.loc[0, "removed_share_gopher_quality"] == pytest.approx(1 / 5)
    assert s.loc[2, "removed_share_exact_dedup"] == pytest.approx(1 / 4)
    assert s.loc[1, "removed_share_exact_dedup"] == 0
    assert s.loc[2, "mean_words"] == pytest.approx((3 + 3 + 0) / 3)
    assert all(len(x) == 2 for x in s.samples)
    with pytest.raises(ValueError, match="lacks column"):
        cluster_summaries(docs.drop(columns="cluster"))


def test_dask_kmeans_on_stored_parquet_embeddings(tmp_path):
    import dask.dataframe as dd
    from llmwork.embed import vectors_to_series, write_embeddings
    import pandas as pd
    x, truth = make_blobs(900, n_features=5, centers=3, cluster_std=0.3, random_state=8)
    frame = pd.DataFrame({"id": [f"d{i:04d}" for i in range(900)]})
    with dask.config.set({"scheduler": "synchronous", "dataframe.convert-string": False}):
        frame["embedding"] = vectors_to_series(x.astype(np.float32))
        write_embeddings(dd.from_pandas(frame, npartitions=3), tmp_path / "vec")
        stored = dd.read_parquet(tmp_path / "vec")
        m = DaskKMeans(3, seed=0).fit(stored)
    assert adjusted_rand_score(truth, m.labels_) >= 0.99
    single = KMeans(3, init=m.cluster_centers_, max_iter=1).fit(x)
    np.testing.assert_array_equal(single.labels_, m.labels_)


def _bind(call):
    from llmwork.engine import bind
    return bind(call)


def test_gpu_calls_of_semantic_dedup_steps_bind_to_cudf():
    pytest.importorskip("cudf")
    from llmwork.cluster import SemanticDedup
    from llmwork.viz import SemanticDedupOfClusters
    for step in (SemanticDedup(), SemanticDedupOfClusters()):
        calls = step.gpu_calls()
        assert {"cudf.DataFrame.sort_values", "cudf.Series.take", "cudf.Series.map", "cudf.from_pandas"} <= {c.api for c in calls}
        for call in calls: _bind(call)
    bad = type(calls[0])("cudf.Series.take", (), (("indexes", None),))
    with pytest.raises(TypeError): _bind(bad)


@pytest.mark.parametrize("threshold", [0.8, 0.95, 0.99])
def test_torch_semantic_dedup_kernel_equals_numpy(threshold):
    from llmwork.cluster import cluster_duplicates_torch, semantic_duplicates, semantic_duplicates_torch
    rng = np.random.default_rng(3)
    base = rng.normal(size=(120, 8)).astype(np.float32)
    x = np.concatenate([base, base + rng.normal(scale=0.05, size=base.shape).astype(np.float32), rng.normal(size=(60, 8)).astype(np.float32)])
    x = x[rng.permutation(len(x))]
    ids = [f"{i:04d}" for i in range(len(x))]
    expected = semantic_duplicates(ids, x, threshold)
    assert (semantic_duplicates_torch(torch.from_numpy(x), threshold).numpy() == expected).all()
    assert (semantic_duplicates_torch(torch.from_numpy(x), threshold, block_rows=13).numpy() == expected).all()
    labels = torch.tensor([0] * 100 + [1] * 200)
    got = cluster_duplicates_torch(torch.from_numpy(x), labels, threshold).numpy()
    first, second = semantic_duplicates(ids[:100], x[:100], threshold), semantic_duplicates(ids[100:], x[100:], threshold)
    assert (got == np.concatenate([first, np.where(second >= 0, second + 100, -1)])).all()


def test_dask_kmeans_on_tensor_blocks_equals_numpy_blocks():
    import dask
    from llmwork.cluster import _block_assignment, _block_moments, _block_sample, _block_statistics
    x = np.random.default_rng(0).normal(size=(500, 6)).astype(np.float32)
    centers = x[:4].copy()
    t = torch.from_numpy(x.copy())
    a, b = _block_statistics(x, centers, False, None, None), _block_statistics(t, centers, False, None, None)
    assert torch.equal(a.sums, b.sums) and torch.equal(a.counts, b.counts)
    assert (_block_assignment(x, centers, True, None, None)[0] == _block_assignment(t, centers, True, None, None)[0]).all()
    assert (_block_sample(x, 0.3, 5) == _block_sample(t, 0.3, 5)).all()
    assert all(np.array_equal(p, q) for p, q in zip(_block_moments(x, True)[1:], _block_moments(t, True)[1:]))


def test_torch_only_paths_import_without_dask():
    import subprocess, sys
    from pathlib import Path
    code = ("import sys, importlib.abc\n"
            "class B(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] in {'dask', 'distributed', 'cudf', 'pyarrow', 'sklearn', 'scipy', 'yaml', 'fsspec'}:\n"
            "            raise ModuleNotFoundError(name, name=name)\n"
            "sys.meta_path.insert(0, B())\n"
            "import numpy as np\n"
            "from llmwork.cluster import KMeans, semantic_duplicates_torch\n"
            "x = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)\n"
            "print(KMeans(3, device='cpu').fit(x).labels_.shape)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(Path(__file__).parent.parent))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(200,)"


def _nemo_reference(vectors):
    "NeMo Curator's pairwise step on one cluster in rank order, in NumPy: the max of the strictly upper triangle, per column."
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similar = np.triu(unit @ unit.T, k=1)
    similar[np.tril_indices(len(unit))] = -2.0
    return similar.max(axis=0), similar.argmax(axis=0)


@pytest.mark.parametrize("block_rows", [1, 7, 1024])
def test_nemo_scores_match_a_numpy_reference(block_rows):
    from llmwork.cluster import earlier_max_similarity
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    x[40:] = x[:20] + 0.01 * rng.normal(size=(20, 8)).astype(np.float32)  # planted near-copies of earlier rows
    scores, rows = earlier_max_similarity(torch.from_numpy(x), block_rows=block_rows)
    expected, argmax = _nemo_reference(x)
    np.testing.assert_allclose(scores[1:].numpy(), expected[1:], atol=1e-5)
    assert (rows[1:].numpy() == argmax[1:]).all() and rows[0] == -1
    assert (rows[40:].numpy() == np.arange(20)).all()


def test_semantic_dedup_on_a_model_embedder_finds_the_copies(tmp_path):
    "SemanticDedup with a sentence-transformers directory as its embedder: both rules remove every exact copy."
    import dask.dataframe as dd
    import pandas as pd
    from llmwork.cluster import SemanticDedup
    from llmwork.embed import tiny_sentence_model
    words = ["kernel module driver", "python parsing library", "font package files", "game levels maps", "audio codec tools"]
    originals = [f"{w} number {i} {' '.join(words[(i + j) % 5] for j in range(i % 4))}" for i, w in enumerate(words * 8)]
    frame = pd.DataFrame({"id": [f"d{i:03d}" for i in range(50)], "text": originals + originals[:10]})
    model = tiny_sentence_model(tmp_path / "tiny", frame.text)
    for rule in ("greedy", "nemo"):
        with dask.config.set(scheduler="synchronous"):
            kept, removed = SemanticDedup(eps=1e-4, n_clusters=4, embedder_path=str(model), rule=rule).run(dd.from_pandas(frame, npartitions=2))
            kept, removed = kept.compute(), removed.compute()
        assert set(frame.id[40:]) <= set(removed.id), rule  # the later id of each exact copy (the random model's vectors
        assert len(kept) + len(removed) == 50 and set(kept.id).isdisjoint(removed.id)  # mean little, so more may go)
        assert set(removed.duplicate_of) <= set(frame.id) and (removed.duplicate_of < removed.id).all()
