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
