"Retrieval over stored datasets: cross-checked against pandas and numpy (and faiss when installed), bad queries, the CLI."
import json

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from llmwork.io import read_sample_corpus, write_corpus
from llmwork.search import (InvertedFileIndex, SearchError, VectorIndex, as_vectors, duplicates_of, exact_topk,
                            find_ids, find_where, grep, nearest, open_dataset, parse_where, provenance, search,
                            search_box)


@pytest.fixture(scope="module")
def sample():
    "The sample corpus with an `n_words` column, as pandas, written as-is and sorted across files."
    df = read_sample_corpus().compute()
    df["n_words"] = df["text"].str.split().str.len().astype("int64")
    return df.reset_index(drop=True)


@pytest.fixture(scope="module")
def stored(sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    ddf = dd.from_pandas(sample, npartitions=3)
    return {"unsorted": write_corpus(ddf, root / "unsorted", sort=False), "sorted": write_corpus(ddf, root / "sorted"),
            "root": root}


def test_id_lookups_match_pandas_and_read_few_row_groups(sample, stored):
    rng = np.random.default_rng(1)
    wanted = list(sample["id"].iloc[rng.choice(len(sample), 25, replace=False)])
    for name in ("unsorted", "sorted"):
        got = find_ids(stored[name], wanted, columns=["section", "n_words"])
        expected = sample.set_index("id").loc[wanted]
        assert got["id"].tolist() == wanted
        assert got["section"].tolist() == expected["section"].tolist()
        assert got["n_words"].tolist() == expected["n_words"].tolist()
    ds = open_dataset(stored["sorted"])
    total_groups = sum(e["row_groups"] for e in ds.manifest["files"])
    assert total_groups >= 7
    one = find_ids(ds, "debian:zsh")
    # sorted across files: the manifest keeps one file, its statistics one row group
    assert (one.attrs["stats"]["files_read"], one.attrs["stats"]["row_groups_read"]) == (1, 1)
    assert one.attrs["stats"]["row_groups_total"] == total_groups
    # sorted within files only: one row group per file whose id range covers the id
    loose = find_ids(stored["unsorted"], "debian:zsh").attrs["stats"]
    assert loose["row_groups_read"] == loose["files_read"] <= 3 < loose["row_groups_total"]


@pytest.mark.parametrize("expr, query", [
    ('section == "games"', lambda d: d.section == "games"),
    ("n_words > 1000", lambda d: d.n_words > 1000),
    ('section in ["devel", "libdevel"] and n_words < 10', lambda d: d.section.isin(["devel", "libdevel"]) & (d.n_words < 10)),
    ('not (section != "games") or id == "debian:zsh"', lambda d: (d.section == "games") | (d.id == "debian:zsh")),
    ('"debian:x" <= id < "debian:y"', lambda d: (d.id >= "debian:x") & (d.id < "debian:y")),
    ('section is None', lambda d: d.section.isna()),
])
def test_predicates_match_pandas(sample, stored, expr, query):
    expected = sample[query(sample)].sort_values("id")
    got = find_where(stored["sorted"], expr, columns=["section"], limit=7)
    assert got.attrs["total"] == len(expected)
    assert got["id"].tolist() == expected["id"].tolist()[:7]


def test_predicate_on_sorted_column_skips_row_groups(stored):
    got = find_where(stored["sorted"], '"debian:x" <= id < "debian:y"', limit=1000)
    stats = got.attrs["stats"]
    assert 0 < stats["row_groups_read"] < stats["row_groups_total"] / 3
    # an unselective predicate reads everything: statistics are honest, not always small
    stats = find_where(stored["sorted"], "n_words >= 0", limit=1).attrs["stats"]
    assert stats["row_groups_read"] == stats["row_groups_total"]


@pytest.mark.parametrize("pattern, regex, case", [("python", True, True), (r"\bGTK\+?\b", True, True),
                                                   ("c++", False, True), ("LOREM IPSUM", False, False),
                                                   (r"^(lib)?ncurses", True, False)])
def test_grep_matches_pandas(sample, stored, pattern, regex, case):
    ordered = sample.sort_values("id")
    mask = ordered["text"].str.contains(pattern, regex=regex, case=case, na=False)
    got = grep(stored["sorted"], pattern, regex=regex, case=case, limit=5)
    assert got.attrs["total"] == int(mask.sum())
    assert got["id"].tolist() == ordered[mask]["id"].tolist()[:5]


def test_grep_null_and_empty_texts(tmp_path):
    df = pd.DataFrame({"id": ["a", "b", "c", "d"], "text": ["alpha beta", None, "", "beta"]})
    path = write_corpus(dd.from_pandas(df, npartitions=1), tmp_path / "d")
    assert grep(path, "beta").attrs["total"] == 2
    assert grep(path, ".*").attrs["total"] == 3  # the empty text matches an empty pattern; null never does
    assert grep(path, "beta")["snippet"].tolist() == ["alpha «beta»", "«beta»"]


def test_bad_queries_say_what_is_wrong(stored):
    path = stored["sorted"]
    with pytest.raises(SearchError, match=r"Unknown column 'sectoin'.*id, text, package, section, n_words"):
        find_where(path, "sectoin == 'games'")
    with pytest.raises(SearchError, match="Unknown column 'colour'"):
        find_ids(path, "debian:zsh", columns=["colour"])
    with pytest.raises(SearchError, match="Invalid regular expression"):
        grep(path, "[unclosed")
    with pytest.raises(SearchError, match=r"No document with id 'debian:zhs'.*Nearby ids"):
        find_ids(path, "debian:zhs")
    with pytest.raises(SearchError, match="holds numbers"):
        find_where(path, "n_words > 'many'")
    with pytest.raises(SearchError, match="Could not parse"):
        find_where(path, "n_words >")
    with pytest.raises(SearchError, match="Unsupported expression"):
        find_where(path, "len(text) > 3")
    with pytest.raises(SearchError, match="no such dataset"):
        find_ids(stored["root"] / "missing", "x")


def test_where_never_evaluates_python():
    import pyarrow as pa
    schema = pa.schema([("id", pa.string())])
    for expr in ["__import__('os').system('echo hacked')", "id.__class__ == 1", "[x for x in ()]"]:
        with pytest.raises(SearchError):
            parse_where(expr, schema)


def test_exact_search_matches_numpy():
    rng = np.random.default_rng(0)
    x, q = as_vectors(rng.normal(size=(3000, 24))), as_vectors(rng.normal(size=(11, 24)))
    scores, rows = exact_topk(q, x, k=7, chunk_rows=500)
    full = q.numpy() @ x.numpy().T
    expected = np.argsort(-full, axis=1)[:, :7]
    np.testing.assert_array_equal(rows.numpy(), expected)
    np.testing.assert_allclose(scores.numpy(), np.take_along_axis(full, expected, 1), atol=1e-5)


def _blobs(n=20000, d=32, centers=200, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d))
    return as_vectors(c[rng.integers(0, centers, n)] + 0.5 * rng.normal(size=(n, d)) / np.sqrt(d) * 4)


def test_inverted_file_recall_and_faiss_agreement():
    x = _blobs()
    q = x[:100] + 0.01
    ids = np.array([f"v{i}" for i in range(len(x))], dtype=object)
    index = VectorIndex(ids, x, device="cpu").build_ivf(n_lists=64, seed=0)
    _, exact = index.search(q, k=10)
    _, approx = index.search(q, k=10, nprobe=8)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx)])
    assert recall >= 0.9
    _, everything = index.search(q, k=10, nprobe=64)
    np.testing.assert_array_equal(everything, exact)
    faiss = pytest.importorskip("faiss")
    ivf = index.ivf
    flat = faiss.IndexFlatIP(x.shape[1])
    peer = faiss.IndexIVFFlat(flat, x.shape[1], ivf.n_lists, faiss.METRIC_INNER_PRODUCT)
    peer.quantizer.add(ivf.centroids.numpy())
    peer.is_trained = True
    peer.add_with_ids(ivf.vectors.numpy(), ivf.rows.numpy())
    peer.nprobe = 8
    _, rows = peer.search(q.numpy(), 10)
    # same groups, same probes: the same neighbours as faiss
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids[rows], approx)]) >= 0.999


def test_nearest_by_id_and_errors(sample, stored):
    some = sample[sample["id"].str.startswith("debian:libgtk")].reset_index(drop=True)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(some), 16)).astype(np.float32)
    vectors[1] = vectors[0] + 0.01  # a planted near twin
    index = VectorIndex(some["id"].to_numpy(), vectors, device="cpu")
    got = nearest(stored["sorted"], query_id=some["id"][0], k=3, index=index, columns=["section"])
    assert got["id"].iloc[0] == some["id"][1] and some["id"][0] not in set(got["id"])
    assert got["score"].iloc[0] > 0.99 and list(got.columns) == ["id", "snippet", "score", "section"]
    with pytest.raises(SearchError, match="needs the embedder"):
        nearest(stored["sorted"], "gtk widgets", index=index)
    with pytest.raises(SearchError, match="has no 'embedding' column"):
        search(stored["sorted"], like="gtk widgets")
    with pytest.raises(SearchError, match="nprobe needs an inverted file"):
        index.search(vectors[:1], nprobe=2)


def test_nearest_from_embeddings_folder(sample, tmp_path, capsys):
    from llmwork.embed import HashedTfidfEmbedder, embed_corpus, write_embeddings
    small = sample[sample["id"].str.startswith("debian:python3-d")].reset_index(drop=True)
    ddf = dd.from_pandas(small[["id", "text", "section"]], npartitions=2)
    corpus = write_corpus(ddf, tmp_path / "corpus")
    embedder = HashedTfidfEmbedder(dim=16, n_features=2**12, seed=0).fit(small["text"].tolist())
    write_embeddings(embed_corpus(ddf, embedder), tmp_path / "vectors")
    embedder.save(tmp_path / "embedder.npz")
    got = search(corpus, like=small["text"][3], k=1, vectors=tmp_path / "vectors", embedder=tmp_path / "embedder.npz")
    assert got["id"].tolist() == [small["id"][3]]  # its own text finds it
    assert got["score"].iloc[0] == pytest.approx(1.0, abs=1e-4)
    from llmwork.cli import main
    argv = ["search", str(corpus), "--vectors", str(tmp_path / "vectors"), "--k", "2", "--format", "jsonl"]
    assert main([*argv, "--like", small["text"][3], "--embedder", str(tmp_path / "embedder.npz")]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [l["id"] for l in lines][:1] == [small["id"][3]] and len(lines) == 2 and "score" in lines[0]
    ivf = tmp_path / "ivf.npz"
    for _ in range(2):  # builds the inverted file and saves it, then loads it
        assert main([*argv, "--like-id", small["id"][3], "--nprobe", "2", "--ivf", str(ivf)]) == 0
        lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
        assert len(lines) == 2 and small["id"][3] not in {l["id"] for l in lines}
        assert ivf.exists()


@pytest.fixture(scope="module")
def run_dir(sample, stored):
    "A hand-made cleaning output with a chain: c duplicates b, which duplicates a (kept)."
    root = stored["root"] / "run"
    kept = pd.DataFrame({"id": ["a", "k"], "text": ["the original", "other"]})
    removed = pd.DataFrame({"id": ["b", "c", "s"], "text": ["the original", "the original!", "short"],
                            "step": ["exact_dedup", "fuzzy_dedup", "gopher_quality"],
                            "reason": ["exact_duplicate", "fuzzy_duplicate", "too_short"],
                            "duplicate_of": ["a", "b", None]})
    write_corpus(dd.from_pandas(kept, npartitions=1), root / "kept")
    write_corpus(dd.from_pandas(removed, npartitions=1), root / "removed", step="clean")
    return root


def test_provenance_follows_duplicates_to_the_kept_document(run_dir):
    side = provenance(run_dir, "c")
    assert side.loc["id"].tolist() == ["c", "a"]
    assert side.loc["status"].tolist() == ["removed", "kept"]
    assert side.loc[["step", "reason", "duplicate_of"], "removed"].tolist() == ["fuzzy_dedup", "fuzzy_duplicate", "b"]
    assert provenance(run_dir / "removed", "s").columns.tolist() == ["removed"]
    assert duplicates_of(run_dir, "a")["id"].tolist() == ["b"]
    removed = run_dir / "removed"
    assert find_where(removed, 'reason == "fuzzy_duplicate"', ["duplicate_of"])[["id", "duplicate_of"]].values.tolist() == [["c", "b"]]
    assert find_where(removed, "duplicate_of is None", ["reason"])["reason"].tolist() == ["too_short"]
    with pytest.raises(SearchError, match="'k' was kept, not removed"):
        provenance(run_dir, "k")
    with pytest.raises(SearchError, match="No document with id 'zz'"):
        provenance(run_dir, "zz")


def test_cli_outputs_and_errors(stored, run_dir, capsys):
    from llmwork.cli import main
    path = str(stored["sorted"])
    assert main(["search", path, "--where", 'section == "games"', "--limit", "2", "--format", "jsonl", "--columns", "section,n_words"]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and set(lines[0]) == {"id", "snippet", "section", "n_words"} and lines[0]["section"] == "games"
    assert lines[-1] == {"total": find_where(path, 'section == "games"').attrs["total"]}
    assert main(["search", path, "--id", "debian:zsh", "--format", "jsonl"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and json.loads(out[0])["id"] == "debian:zsh"  # no total line for --id
    assert main(["search", str(run_dir), "--provenance", "c"]) == 0
    assert "fuzzy_duplicate" in capsys.readouterr().out
    for argv, message in [(["--where", "colour == 1"], "Unknown column 'colour'"), (["--grep", "(x"], "Invalid regular expression"),
                          (["--id", "debian:nope"], "No document with id 'debian:nope'"), (["--like", "x"], "no 'embedding' column")]:
        assert main(["search", path, *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_search_box(stored):
    box = search_box(stored["sorted"], columns=["section"])
    box.query.value = "ncurses"
    box.button.click()
    assert box.results.attrs["total"] == grep(stored["sorted"], "ncurses", case=False).attrs["total"]
    assert box.picker.value == box.results["id"].iloc[0] and "<pre" in box.detail.value
    box.kind.value, box.query.value = "id", "debian:zsh debian:bash"
    box.button.click()
    assert box.results["id"].tolist() == ["debian:zsh", "debian:bash"]
    box.query.value = "debian:nope"
    box.button.click()
    assert "No document with id" in box.status.value and box.detail.value == ""


def test_grep_in_smaller_partitions_gives_the_same_answer(stored, monkeypatch):
    import llmwork.search as search_module
    whole = grep(stored["unsorted"], "python", limit=30)
    monkeypatch.setattr(search_module, "GREP_PARTITION_ROWS", 10_000)
    assert len(search_module._partitions(open_dataset(stored["unsorted"]), 10_000)) > 3
    parts = grep(stored["unsorted"], "python", limit=30)
    assert parts.attrs["total"] == whole.attrs["total"] and parts["id"].tolist() == whole["id"].tolist()


def test_manifest_under_either_name(stored, tmp_path):
    import shutil
    # as written now: _manifest.json, which pandas/pyarrow folder reads skip
    assert len(pd.read_parquet(stored["sorted"], columns=["id"])) == open_dataset(stored["sorted"]).manifest["rows"]
    legacy = tmp_path / "legacy"  # datasets written before the rename carry manifest.json
    shutil.copytree(stored["sorted"], legacy)
    (legacy / "_manifest.json").rename(legacy / "manifest.json")
    got = find_ids(legacy, "debian:zsh")
    assert got["id"].tolist() == ["debian:zsh"] and got.attrs["stats"]["files_read"] == 1

def _bind(call):
    from llmwork.engine import bind
    return bind(call)


@pytest.mark.parametrize("pattern,regex,case", [("python", True, True), ("lorem ipsum", True, False), ("c++", False, True),
                                                ("Lorem", False, False), (r"[0-9]+\.[0-9]+", True, True)])
def test_gpu_grep_calls_bind_and_compile(pattern, regex, case):
    pytest.importorskip("cudf")
    from llmwork.search import gpu_calls
    calls = gpu_calls(pattern, regex, case)
    assert calls[0].api == "cudf.read_parquet"
    assert calls[1].api == ("pylibcudf.strings.contains.contains_re" if regex else "cudf.Series.str.contains")
    for call in calls:
        _bind(call)
        for r in call.regexes: r.program()  # libcudf's compiler, on the host


def test_gpu_grep_refuses_patterns_without_a_libcudf_equivalent(stored):
    pytest.importorskip("cudf")
    from llmwork.search import gpu_calls
    with pytest.raises(ValueError, match="no exact libcudf equivalent"): gpu_calls(r"\bGTK\b")


def test_cli_provenance_table_for_a_filter_removed_document(tmp_path, run_dir, capsys):
    "A document removed by a filter has no 'duplicate of' column: the table view printed a pandas error for it."
    from llmwork.cli import main
    assert main(["search", str(run_dir), "--provenance", "s"]) == 0
    out = capsys.readouterr().out
    assert "too_short" in out and "gopher_quality" in out and "short" in out
    # the same through a real cleaning run
    docs = [{"id": f"long{i}", "text": " ".join(f"word{j} the of and" for j in range(40 + i))} for i in range(5)]
    docs.append({"id": "tiny", "text": "too few words"})
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    assert main(["clean", str(tmp_path / "corpus.jsonl"), str(tmp_path / "out"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["search", str(tmp_path / "out"), "--provenance", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "removed" in out and "too few words" in out
