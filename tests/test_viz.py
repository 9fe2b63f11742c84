"""Figures and the offline report on a slice of the real sample corpus, with plain pandas/scikit-learn inputs."""
import json

import numpy as np
import pandas as pd
import plotly.offline
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from llmwork import viz
from llmwork.io import sample_corpus_path


@pytest.fixture(scope="module")
def corpus():
    return pd.read_json(sample_corpus_path(), lines=True, nrows=1500, dtype={"id": "str", "text": "str"})


@pytest.fixture(scope="module")
def embedded(corpus):
    tfidf = TfidfVectorizer(max_features=5000).fit_transform(corpus["text"])
    vectors = TruncatedSVD(32, random_state=0).fit_transform(tfidf).astype(np.float32)
    labels = SkKMeans(8, n_init=1, random_state=0).fit_predict(vectors)
    return vectors, labels


def test_cluster_map_one_trace_per_cluster_with_hover(corpus, embedded):
    vectors, labels = embedded
    fig = viz.cluster_map(vectors, labels, corpus["text"], ids=corpus["id"])
    assert {t.type for t in fig.data} == {"scattergl"}
    assert len(fig.data) == 8
    assert sorted(len(t.x) for t in fig.data) == sorted(np.bincount(labels))
    # each point's hover names its document and cluster; find one document and check its label
    i = 17
    trace = fig.data[labels[i]]
    hovers = list(trace.hovertext)
    pos = next(k for k, h in enumerate(hovers) if h.startswith(f"<b>{corpus['id'][i]}</b>"))
    assert trace.customdata[pos] == labels[i]
    assert viz.hover_text(corpus["text"][i]) in hovers[pos]
    # the map's coordinates are the PCA of the vectors (up to scikit-learn's sign convention)
    xy = np.concatenate([np.column_stack([t.x, t.y]) for t in fig.data])
    order = np.concatenate([np.flatnonzero(labels == c) for c in range(8)])
    np.testing.assert_allclose(xy, PCA(2, svd_solver="full").fit_transform(vectors)[order], atol=1e-4)


def test_cluster_map_samples_beyond_max_points(embedded):
    vectors, labels = embedded
    fig = viz.cluster_map(vectors, labels, max_points=500, seed=3)
    assert sum(len(t.x) for t in fig.data) == 500
    assert "500 of 1,500 documents" in fig.layout.title.text
    again = viz.cluster_map(vectors, labels, max_points=500, seed=3)
    assert [list(t.x) for t in fig.data] == [list(t.x) for t in again.data]


def test_cluster_sizes_match_counts(embedded):
    _, labels = embedded
    bars = viz.cluster_sizes(labels).data[0]
    counts = pd.Series(labels).value_counts()
    assert list(bars.y) == sorted(counts.tolist(), reverse=True)
    assert dict(zip(bars.x, bars.y)) == {str(k): v for k, v in counts.items()}


def _report(corpus):
    "A cleaning report computed by hand with pandas: exact dedup, then a minimum of 12 words."
    dup = corpus["text"].duplicated()
    after = corpus[~dup]
    short = after["text"].str.split().str.len() < 12
    chars = lambda s: int(s.str.len().sum())
    return {"n_in": len(corpus), "n_kept": int((~short).sum()), "steps": [
        {"name": "exact_dedup", "n_in": len(corpus), "n_removed": int(dup.sum()), "n_out": len(after),
         "chars_in": chars(corpus["text"]), "chars_out": chars(after["text"]), "reasons": {"exact_duplicate": int(dup.sum())}},
        {"name": "min_words", "n_in": len(after), "n_removed": int(short.sum()), "n_out": int((~short).sum()),
         "chars_in": chars(after["text"]), "chars_out": chars(after["text"][~short]), "reasons": {"too_short": int(short.sum())}}]}


def test_funnel_from_report_file(tmp_path, corpus):
    report = _report(corpus)
    (tmp_path / "report.json").write_text(json.dumps(report))
    funnel = viz.cleaning_funnel(tmp_path).data[0]
    assert funnel.type == "funnel"
    assert list(funnel.x) == [1500, report["steps"][0]["n_out"], report["n_kept"]]
    assert report["steps"][0]["n_removed"] > 0 and report["steps"][1]["n_removed"] > 0
    assert funnel.hovertext[1] == f"removed {report['steps'][0]['n_removed']:,}<br>exact_duplicate: {report['steps'][0]['n_removed']:,}"


def test_funnel_rejects_report_that_does_not_reconcile(corpus):
    report = _report(corpus)
    report["steps"][1]["n_in"] += 1
    with pytest.raises(ValueError, match="does not reconcile at step 'min_words'"):
        viz.cleaning_funnel(report)


def test_length_histogram_counts_words(corpus):
    fig = viz.length_histogram({"all": corpus["text"]}, log_x=False)
    np.testing.assert_array_equal(fig.data[0].x, corpus["text"].str.split().str.len().to_numpy())


def test_report_is_self_contained(tmp_path, corpus, embedded):
    vectors, labels = embedded
    summary = pd.DataFrame({"cluster": range(8), "size": np.bincount(labels),
                            "sample": [corpus["text"][labels == c].iloc[0] for c in range(8)]})
    path = viz.write_report(tmp_path, {
        "Cleaning funnel": viz.cleaning_funnel(_report(corpus)),
        "Cluster map": viz.cluster_map(vectors, labels, corpus["text"]),
        "Cluster sizes": viz.cluster_sizes(labels),
        "Clusters": summary,
        "Training": viz.loss_curve([{"step": s, "loss": 5 / s} for s in range(1, 6)])}, title="Sample")
    page = path.read_text()
    assert path.name == "report.html"
    assert page.count(plotly.offline.get_plotlyjs()) == 1
    assert viz.external_references(page) == []
    markup = page.replace(plotly.offline.get_plotlyjs(), "")
    assert "<script src" not in markup and 'href="http' not in markup and "cdn." not in markup
    assert page.count('class="plotly-graph-div"') == 4
    assert page.count("<tr") == 9  # header + one row per cluster
    assert not list(tmp_path.glob(".report.html.tmp*"))


def test_report_refuses_to_overwrite_unless_asked(tmp_path):
    viz.write_report(tmp_path, {"Note": "first"})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        viz.write_report(tmp_path, {"Note": "second"}, overwrite=False)
    viz.write_report(tmp_path, {"Note": "second"}, overwrite=True)
    assert "<p>second</p>" in (tmp_path / "report.html").read_text()


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, corpus):
    path = tmp_path_factory.mktemp("corpus") / "slice.jsonl"
    corpus.iloc[:600].to_json(path, orient="records", lines=True)
    return path


def test_cluster_command_writes_clusters_and_report(tmp_path, corpus_file, corpus, capsys):
    from llmwork.cli import main
    out = tmp_path / "clusters"
    assert main(["cluster", str(corpus_file), str(out), "--k", "6", "--n-workers", "1", "--backend", "cpu"]) == 0
    assert "600 documents in 6 clusters" in capsys.readouterr().out
    assigned = pd.read_parquet(out / "clusters.parquet")
    assert sorted(assigned["id"]) == sorted(corpus["id"][:600])
    summary = pd.read_json(out / "summary.json")
    assert summary["size"].sum() == 600
    assert dict(zip(summary["cluster"], summary["size"])) == assigned["cluster"].value_counts().to_dict()
    page = (out / "report.html").read_text()
    assert viz.external_references(page) == []
    assert "<h2>Cluster map</h2>" in page and "<h2>Clusters</h2>" in page
    assert sorted(p.name for p in out.iterdir()) == ["centers.npy", "clusters.parquet", "embedder.npz", "kmeans.json", "report.html", "summary.json"]
    # a second run refuses to replace the output unless asked, with a plain message and exit status 2
    assert main(["cluster", str(corpus_file), str(out), "--k", "6", "--n-workers", "1", "--backend", "cpu"]) == 2
    assert "pass --overwrite to replace it" in capsys.readouterr().err


def test_cluster_command_rejects_k_larger_than_corpus(tmp_path, corpus, capsys):
    from llmwork.cli import main
    small = tmp_path / "small.jsonl"
    corpus.iloc[:4].to_json(small, orient="records", lines=True)
    assert main(["cluster", str(small), str(tmp_path / "out"), "--k", "10", "--n-workers", "1", "--backend", "cpu"]) == 2
    assert "fewer than the k=10 clusters" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cluster_command_on_a_cleaning_run_reports_the_funnel_too(tmp_path, corpus_file, capsys):
    from llmwork.cli import main
    from llmwork.clean import Pipeline
    from llmwork.io import read_corpus
    report = Pipeline([{"step": "exact_dedup"}]).run(read_corpus(str(corpus_file)), tmp_path / "clean")
    out = tmp_path / "clusters"
    assert main(["cluster", str(tmp_path / "clean"), str(out), "--k", "4", "--n-workers", "1", "--backend", "cpu"]) == 0
    kept_ids = pd.concat(pd.read_parquet(f, columns=["id"]) for f in (tmp_path / "clean" / "kept").glob("*.parquet"))["id"]
    assert sorted(pd.read_parquet(out / "clusters.parquet")["id"]) == sorted(kept_ids)
    assert len(kept_ids) == report["n_kept"]
    page = (out / "report.html").read_text()
    for title in ("Cleaning funnel", "Cleaning steps", "Document length", "Cluster map", "Clusters"):
        assert f"<h2>{title}</h2>" in page


def test_run_report_shows_settings_removed_examples_and_the_sample(tmp_path, corpus):
    from llmwork.clean import Pipeline
    import dask.dataframe as dd
    texts = corpus.head(200).copy()
    texts = pd.concat([texts, texts.head(7).assign(id=[f"copy{i}" for i in range(7)])], ignore_index=True)
    Pipeline([{"step": "exact_dedup"}]).run(dd.from_pandas(texts, npartitions=2), tmp_path / "clean")
    train = tmp_path / "train"
    train.mkdir()
    (train / "metrics.jsonl").write_text("\n".join(json.dumps({"step": i, "loss": 5.0 - i / 10}) for i in range(1, 6)))
    (train / "sample.json").write_text(json.dumps({"prompt": "This package provides", "sample": " a <b>library</b> for fonts",
                                                   "known_words": 1.0, "n_words": 3, "steps": 5}))
    page = viz.run_report(tmp_path / "report", clean_dir=tmp_path / "clean", history=train / "metrics.jsonl").read_text()
    for title in ("Cleaning settings", "Removed documents, a few per reason", "Generated sample"):
        assert f"<h2>{title}</h2>" in page
    section = page.split("<h2>Removed documents, a few per reason</h2>")[1].split("</section>")[0]
    assert section.count("exact_duplicate") == 3 and section.count("copy") == 3  # three examples, with their ids
    assert "This package provides a &lt;b&gt;library&lt;/b&gt; for fonts" in page  # escaped, in one piece
    assert "100% of its 3 words of 3+ letters occur in the training corpus" in page
    assert " in " in page.split("<h2>Cleaning</h2>")[1].split("</section>")[0] and " s, from " in page


def test_eps_figure_plots_nemos_removed_share():
    from llmwork.viz import EPS_GRID, eps_figure
    scores = np.array([-1.0, 0.9995, 0.985, 0.97, 0.5, 0.2, 0.9999, -1.0])  # two clusters' first documents score -1
    fig = eps_figure(scores, chosen=0.01)
    assert list(fig.data[0].x) == list(EPS_GRID) and fig.layout.xaxis.type == "log"
    expected = {0.001: 2, 0.002: 2, 0.005: 2, 0.01: 2, 0.02: 3, 0.05: 4, 0.1: 4, 0.2: 4, 0.3: 4}
    np.testing.assert_allclose(fig.data[0].y, [expected[e] / 8 for e in EPS_GRID])
    assert fig.layout.shapes[0].x0 == 0.01  # the chosen eps is marked


def test_cluster_and_search_commands_take_an_embedder():
    from llmwork.cli import build_parser
    parser = build_parser()
    assert parser.parse_args(["cluster", "in", "out"]).embedder == "hashed_tfidf"
    assert parser.parse_args(["cluster", "in", "out", "--embedder", "minilm"]).embedder == "minilm"
    assert parser.parse_args(["search", "ds", "--like", "x", "--embedder", "/models/mine"]).embedder == "/models/mine"
    assert parser.parse_args(["embed", "corpus"]).embedder == "minilm"
