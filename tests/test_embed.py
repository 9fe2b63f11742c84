"Embeddings: determinism, Dask vs single-process, storage round trips and bad input."
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import llmwork
from llmwork.embed import (HashedTfidfEmbedder, embed_corpus, fit_embedder, load_embedder, read_embeddings,
                           series_to_vectors, vectors_to_series, write_embeddings)

SAMPLE = Path(llmwork.__file__).parent / "data" / "debian_descriptions.jsonl.gz"


@pytest.fixture(scope="module")
def docs():
    return pd.read_json(SAMPLE, lines=True, nrows=1500)


@pytest.fixture(scope="module")
def embedder(docs):
    return HashedTfidfEmbedder(dim=24, n_features=2**13, seed=1).fit(docs.text)


def test_vectors_are_unit_float32_and_deterministic(docs, embedder):
    v = embedder.transform(docs.text)
    assert v.shape == (1500, 24) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    w = HashedTfidfEmbedder(dim=24, n_features=2**13, seed=1).fit(docs.text).transform(docs.text)
    np.testing.assert_allclose(v, w, atol=1e-5)


def test_identical_texts_get_identical_vectors_and_missing_text_is_empty(embedder):
    v = embedder.transform(["zlib compression library", "zlib compression library", None, ""])
    np.testing.assert_array_equal(v[0], v[1])
    np.testing.assert_array_equal(v[2], v[3])


def test_projection_matches_numpy_pca_subspace(docs):
    # the randomized PCA must find (nearly) the same top subspace as an exact dense PCA of the same features
    e = HashedTfidfEmbedder(dim=8, n_features=2**10, niter=8, seed=0).fit(docs.text[:600])
    x = e.tfidf.transform(docs.text[:600].tolist())[:, e.columns].toarray()
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    overlap = np.linalg.svd(vt[:4] @ e.components[:, :4])[1]  # cosines of principal angles of the top-4 subspaces
    assert overlap.min() > 0.99, overlap


def test_dask_embedding_equals_direct(docs, embedder):
    ddf = dd.from_pandas(docs[["id", "text"]], npartitions=4)
    with dask.config.set(scheduler="synchronous"):
        out = embed_corpus(ddf, embedder).compute()
    assert list(out.id) == list(docs.id)
    np.testing.assert_allclose(series_to_vectors(out.embedding), embedder.transform(docs.text), atol=1e-6)


@pytest.mark.parametrize("fmt", ["parquet", "npy"])
def test_write_and_read_embeddings(tmp_path, docs, embedder, fmt):
    ddf = embed_corpus(dd.from_pandas(docs[["id", "text"]].iloc[:300], npartitions=3), embedder)
    out = write_embeddings(ddf, tmp_path / "vec", format=fmt)
    ids, matrix = read_embeddings(out)
    assert list(ids) == list(docs.id[:300])
    np.testing.assert_allclose(matrix, embedder.transform(docs.text[:300]), atol=1e-6)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_embeddings(ddf, out, format=fmt)
    write_embeddings(ddf, out, format=fmt, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vec"]


def test_save_load_round_trip(tmp_path, docs, embedder):
    path = embedder.save(tmp_path / "e.npz")
    np.testing.assert_array_equal(load_embedder(path).transform(docs.text[:20]), embedder.transform(docs.text[:20]))


def test_fit_embedder_on_dask_sample(docs):
    ddf = dd.from_pandas(docs[["id", "text"]], npartitions=3)
    a = fit_embedder(ddf, HashedTfidfEmbedder(dim=8, n_features=2**10), sample_size=400, seed=3)
    b = fit_embedder(ddf, HashedTfidfEmbedder(dim=8, n_features=2**10), sample_size=400, seed=3)
    np.testing.assert_array_equal(a.transform(docs.text[:5]), b.transform(docs.text[:5]))


def test_vector_series_round_trip():
    m = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(series_to_vectors(vectors_to_series(m)), m)


def test_bad_input_messages(tmp_path, docs):
    with pytest.raises(ValueError, match="needs more than 24 sample texts"):
        HashedTfidfEmbedder(dim=24).fit(["a"] * 10)
    with pytest.raises(ValueError, match="not fitted yet"):
        HashedTfidfEmbedder().transform(["a"])
    with pytest.raises(ValueError, match="'parquet' or 'npy'"):
        write_embeddings(dd.from_pandas(docs[["id", "text"]], npartitions=1), tmp_path / "x", format="csv")
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(Exception):
        load_embedder(tmp_path / "bad.npz")


def _bind(call):
    from llmwork.engine import bind
    return bind(call)


def test_gpu_calls_bind_to_cudf_signatures():
    pytest.importorskip("cudf")
    from llmwork.embed import gpu_calls
    calls = gpu_calls()
    assert {c.api for c in calls} >= {"cudf.Series.to_arrow", "pylibcudf.Column.from_cuda_array_interface",
                                      "cudf.Series.from_pylibcudf", "cudf.Series.explode", "cudf.Series.to_cupy"}
    for call in calls: _bind(call)


def test_device_transform_equals_host_transform(docs, embedder):
    import torch
    texts = list(docs.text[:500]) + ["", None]
    on_device = embedder.transform_on(texts, "cpu")  # the torch path, run on the CPU
    assert on_device.dtype == torch.float32
    np.testing.assert_allclose(on_device.numpy(), embedder.transform(texts), atol=1e-5)


def test_tfidf_on_device_equals_scipy(docs):
    import torch
    from llmwork.embed import HashedTfidf, tfidf_on_device
    tfidf = HashedTfidf(n_features=2**12).fit(docs.text[:300])
    host = tfidf.transform(docs.text[:50])
    rows, cols, values, shape = tfidf_on_device(tfidf, docs.text[:50], "cpu")
    assert shape == host.shape
    np.testing.assert_allclose(torch.zeros(shape).index_put_((rows, cols), values).numpy(), host.toarray(), atol=1e-6)


# --- pretrained sentence-transformers models (ModelEmbedder) ---

from llmwork.embed import ModelEmbedder, ModelUnavailable, get_embedder, tiny_sentence_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, docs):
    return tiny_sentence_model(tmp_path_factory.mktemp("models") / "tiny", docs.text[:300], seed=3)


def test_model_embedder_matches_sentence_transformers(tiny_dir, docs):
    from sentence_transformers import SentenceTransformer
    reference = SentenceTransformer(str(tiny_dir), device="cpu", local_files_only=True)
    expected = reference.encode(docs.text[:50].tolist(), batch_size=7, normalize_embeddings=True)
    got = ModelEmbedder(tiny_dir, batch_size=16, device="cpu").transform(docs.text[:50])
    assert got.dtype == np.float32 and got.shape == (50, 32)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_model_embedder_over_dask_equals_one_process(tiny_dir, docs):
    embedder = ModelEmbedder(tiny_dir, device="cpu")
    corpus = dd.from_pandas(docs[["id", "text"]].iloc[:120], npartitions=4)
    assert fit_embedder(corpus, embedder) is embedder  # nothing to fit, no sample read
    with dask.config.set(scheduler="processes", num_workers=2):  # pickled to other processes, loaded there
        result = embed_corpus(corpus, embedder).compute()
    np.testing.assert_allclose(series_to_vectors(result.embedding), embedder.transform(docs.text[:120]), atol=1e-5)


def test_model_embedder_saves_a_reference_not_weights(tmp_path, tiny_dir):
    saved = ModelEmbedder(tiny_dir, batch_size=8).save(tmp_path / "e.npz")
    assert saved.stat().st_size < 10_000
    back = get_embedder(saved)
    assert isinstance(back, ModelEmbedder) and back.path == Path(tiny_dir).resolve() and back.batch_size == 8


def test_missing_models_are_one_sentence(tmp_path, monkeypatch):
    with pytest.raises(ModelUnavailable, match=r"not a sentence-transformers model directory") as e:
        get_embedder(tmp_path)
    assert "\n" not in str(e.value)
    monkeypatch.setitem(__import__("llmwork.embed").embed.MODEL_PACKAGES, "absent", ("no_such_model_module", "no-such-wheel"))
    with pytest.raises(ModelUnavailable, match=r"pip install 'llmwork\[models\]'.*--embedder PATH"):
        get_embedder("absent")
    with pytest.raises(ValueError, match="Unknown embedder"):
        get_embedder("no-such-embedder")


def test_model_loading_never_reaches_a_hub(tiny_dir, monkeypatch):
    import socket
    def refuse(*a, **k): raise AssertionError("a network connection was attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert ModelEmbedder(tiny_dir, device="cpu").transform(["offline"]).shape == (1, 32)


def test_cli_embed_then_search_by_meaning_with_minilm(tmp_path, capsys):
    "The real MiniLM (the `models` extra): `llmwork embed` writes vectors beside the corpus, `llmwork search --like` finds a paraphrase."
    from llmwork.cli import main
    from llmwork.io import write_corpus
    texts = ["The central bank raised interest rates to fight inflation.", "The striker scored twice in the cup final.",
             "A new smartphone with a foldable screen was unveiled.", "Parliament passed the budget after a long debate."]
    frame = pd.DataFrame({"id": [f"d{i}" for i in range(4)], "text": texts})
    write_corpus(dd.from_pandas(frame, npartitions=1), tmp_path / "news")
    assert main(["embed", str(tmp_path / "news"), "--embedder", "minilm"]) == 0
    ids, vectors = read_embeddings(tmp_path / "news.embeddings")
    assert list(ids) == list(frame.id) and vectors.shape == (4, 384)
    capsys.readouterr()
    assert main(["search", str(tmp_path / "news"), "--vectors", str(tmp_path / "news.embeddings"), "--embedder", "minilm",
                 "--like", "Football team wins the championship match", "--k", "1", "--format", "jsonl"]) == 0
    assert '"id": "d1"' in capsys.readouterr().out
