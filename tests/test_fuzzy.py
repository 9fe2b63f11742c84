"""Fuzzy dedup: cuDF's MinHash vectors, a pure-Python reference, LSH invariances, planted-corpus accuracy, the CLI."""
import json
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from llmwork import fuzzy as F
from llmwork.io import sample_corpus_path

U32 = lambda *v: np.array(v, np.uint32)


@pytest.fixture(scope="module")
def sample():
    return pd.read_json(sample_corpus_path(), lines=True)


# ---- signatures -------------------------------------------------------------------------------------------------

def test_cudf_documented_vectors():
    a, b = np.array([1, 2, 3], np.uint32), np.array([4, 5, 6], np.uint32)
    assert F.minhash(pd.Series(["this is my", "favorite book"]), 0, a, b, 5).tolist() == [
        [1305480171, 462824409, 74608232], [32665388, 65330773, 97996158]]
    assert F.minhash(pd.Series([["this", "is", "my"], ["favorite", "book"]]), 0, a, b, 2).tolist() == [
        [416367551, 832735099, 1249102647], [1906668704, 3813337405, 1425038810]]


def test_cudf_cpp_test_vectors():
    s = pd.Series(["doc 1", "d", "The quick brown fox jumpéd over the lazy brown dog."])
    assert F.minhash(s, 0, U32(10, 11, 12), U32(10, 11, 12), 4).tolist() == [
        [1392101586, 394869177, 811528444], [2264583304, 2920538364, 3576493424], [253327882, 41747273, 302030804]]
    assert F.minhash(pd.Series(["x" * 2048]), 0, U32(20, 21, 22), U32(20, 21, 22), 4).tolist() == [[1731998032, 315359380, 3193688024]]


def test_nemo_full_range_vector():
    sig = F.minhash_signatures(pd.Series(["The quick brown fox jumps over the lazy dog, again and again."]), "nemo")
    assert sig.iloc[0][:4] == [43534987, 231969616, 95738383, 137314129]


def test_wrapping_permutation_differs_from_the_docstring_formula():
    # with NeMo's full-range a/b the kernel's uint32 wrap and the docstring's "% (2**61 - 1)" disagree; we follow the kernel
    a, b = F.permutation_parameters(260, 42)
    text = "The quick brown fox jumps over the lazy dog, again and again."
    hashes = [max(F.reference_murmur3_32(text[i:i + 24].encode(), int(a[0])), 1) for i in range(len(text) - 23)]
    docstring = [min(((h * int(x) + int(y)) % (2**61 - 1)) & 0xFFFFFFFF for h in hashes) for x, y in zip(a, b)]
    ours = F.minhash_signatures(pd.Series([text]), "nemo").iloc[0]
    assert ours == [min((h * int(x) + int(y)) % 2**32 for h in hashes) for x, y in zip(a, b)]
    assert sum(o != d for o, d in zip(ours, docstring)) > 50


def test_murmur_reference_agrees_with_spacy_murmurhash():
    mrmr = pytest.importorskip("murmurhash.mrmr")
    rng = np.random.default_rng(1)
    for n in range(0, 40):
        key = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        seed = int(rng.integers(0, 2**31))
        want = mrmr.hash_bytes(key, seed=seed) & 0xFFFFFFFF
        assert F.reference_murmur3_32(key, seed) == want
        assert int(F.murmur3_32(np.frombuffer(key, np.uint8), 0, n, seed)) == want


TRICKY = ["", "a", "ab", "abcd", "héllo wörld", "日本語のテキストです。さらに長い文", "emoji 🙂🙃 mix 👍🏽", "x" * 300,
          "tab\tand\nnewline", "ñ" * 30, "The quick brown fox jumps over the lazy dog."]


@pytest.mark.parametrize("width", [2, 3, 5, 24])
def test_numba_matches_reference_on_random_full_range_parameters(sample, width):
    rng = np.random.default_rng(width)
    a, b = rng.integers(0, 2**32, 24, dtype=np.uint32), rng.integers(0, 2**32, 24, dtype=np.uint32)
    seed = int(rng.integers(0, 2**32))
    texts = TRICKY + sample["text"].sample(60, random_state=width).tolist()
    got = F.minhash(pd.Series(texts), seed, a, b, width).tolist()
    assert got == [F.reference_minhash(t, seed, a, b, width) for t in texts]
    words = [t.split() for t in texts]
    got = F.minhash(pd.Series(words), seed, a, b, width).tolist()
    assert got == [F.reference_minhash(w, seed, a, b, width) for w in words]


def test_nulls_empties_and_input_types():
    a, b = U32(7, 8), U32(9, 10)
    for s in (pd.Series(["abc", None, ""], dtype="str"), pd.Series(["abc", None, ""], dtype=object),
              pd.Series(["abc", None, ""], dtype="string[pyarrow]")):
        r = F.minhash(s, 3, a, b, 4)
        assert r.isna().tolist() == [False, True, False]
        assert r.iloc[2] == [0, 0] and r.iloc[0] == F.reference_minhash("abc", 3, a, b, 4)
    r = F.minhash(pd.Series([["a", "b"], None, [], ["c"]], dtype=object), 3, a, b, 2)
    assert r.isna().tolist() == [False, True, False, False] and r.iloc[2] == [0, 0]
    assert r.iloc[3] == F.reference_minhash(["c"], 3, a, b, 2)
    assert F.minhash(pd.Series(["abc"], index=[42]), 3, a, b, 4).index.tolist() == [42]


def test_chunking_and_slices_do_not_change_values(sample):
    texts = sample["text"].iloc[1000:1400]
    a, b = F.permutation_parameters(16, 5)
    whole, _ = F.minhash_array(texts, 1, a, b, 6, chunk_rows=4096)
    small, _ = F.minhash_array(texts, 1, a, b, 6, chunk_rows=7)
    sliced, _ = F.minhash_array(sample["text"].iloc[1100:1200], 1, a, b, 6)
    np.testing.assert_array_equal(whole, small)
    np.testing.assert_array_equal(whole[100:200], sliced)


@pytest.mark.parametrize("call, message", [
    (lambda: F.minhash(pd.Series(["a"]), 0, U32(1), U32(2), 1), "width must be an integer of 2 or more"),
    (lambda: F.minhash(pd.Series(["a"]), 0, U32(), U32(), 4), "empty"),
    (lambda: F.minhash(pd.Series(["a"]), 0, U32(1, 2), U32(3), 4), "same length"),
    (lambda: F.minhash(pd.Series(["a"]), 0, [1], [3], 4), "Expecting a and b Series as uint32"),
    (lambda: F.minhash(pd.Series(["a"]), 0, np.array([1]), U32(3), 4), "got a as ndarray of int64"),
    (lambda: F.minhash(pd.Series(["a"]), 0, U32(1), np.array([3], np.uint64), 4), "got b as ndarray of uint64"),
    (lambda: F.minhash(pd.Series(["a"]), 0, pd.Series([1], dtype="int32"), U32(3), 4), "got a as Series of int32"),
    (lambda: F._minhash_cudf(None, 0, [1], U32(3), 4), "Expecting a and b Series as uint32"),  # the GPU path refuses alike
    (lambda: F.minhash(pd.Series(["a"]), -5, U32(1), U32(3), 4), "seed must be in"),
    (lambda: F.minhash_signatures(pd.Series(["a"]), "nope"), "Unknown MinHash preset 'nope'"),
    (lambda: F.check_banding(260, 27, 10), "at most the 260 permutations"),
    (lambda: F.FuzzyDedup(bands=4), "both bands and rows"),
])
def test_bad_input_errors(call, message):
    with pytest.raises(ValueError, match=None) as e: call()
    assert message in str(e.value)


def test_presets_match_nemo_and_datatrove_settings():
    a, b = F.permutation_parameters(260, 42)
    gen = np.random.RandomState(42)
    for i in range(3):  # NeMo draws a then b for each permutation, in [1, 2**31-1) and [0, 2**31-1)
        assert (a[i], b[i]) == (gen.randint(1, 2**31 - 1, dtype=np.uint32), gen.randint(0, 2**31 - 1, dtype=np.uint32))
    assert a.dtype == np.uint32 and a.min() >= 1 and a.max() < 2**31 - 1
    nemo, fineweb = F.PRESETS["nemo"], F.PRESETS["fineweb"]
    assert (nemo.num_perm, nemo.width, nemo.bands, nemo.rows, nemo.seed) == (260, 24, 20, 13, 42)
    assert (fineweb.num_perm, fineweb.width, fineweb.bands, fineweb.rows, fineweb.words) == (112, 4, 14, 8, True)


def test_fineweb_is_five_word_shingles_of_simplified_text():
    text = "Hello, World! The year 2024 was naïve; the café-owner said: 'yes'."
    words = F.simplify_text(text).split()
    assert words == ["hello", "world", "the", "year", "0", "was", "naive", "the", "cafe", "owner", "said", "yes"]
    a, b = F.permutation_parameters(112, 1)
    assert F.minhash_signatures(pd.Series([text]), "fineweb").iloc[0] == F.reference_minhash(words, int(a[0]), a, b, 4)
    sets = F.shingle_sets(pd.Series([text]), "fineweb")
    assert len(sets) == 1 and sets.offsets[1] == len(words) - 4


def test_permutations_as_pandas_uint32_series_work():
    a, b = pd.Series([1, 2, 3], dtype="uint32"), pd.Series([4, 5, 6], dtype="uint32")
    assert F.minhash(pd.Series(["this is my"]), 0, a, b, 5).tolist() == [[1305480171, 462824409, 74608232]]


def test_vectorized_simplify_equals_the_loop(sample):
    odd = ["ΟΔΟΣ ΣΑΣ Σ", "İstanbul", "\u0378 unassigned", "a \u0301 b", "\u037e;\u1fef x", "x\x1c\x85\xa0y ٣٫١٤ 12,5",
           "Ünïcödé “quotes” — dashes… ％ 【brackets】 ٣٫١٤ numbers", "ǅungla ǈ ǋ", "𐐀𐐁 Deseret", "\u1e9e STRASSE"]
    texts = TRICKY + odd + sample["text"].tolist()[::3]
    got = F.simplify_texts(pd.Series(texts, index=np.arange(len(texts))[::-1]))
    assert got.tolist() == [F.simplify_text(t) for t in texts]
    assert got.index.tolist() == list(range(len(texts)))[::-1]


def test_python_classes_match_python_re():
    import re, sys
    c = F._python_classes()
    points = [p for p in range(0, sys.maxunicode + 1, 7) if not 0xD800 <= p < 0xE000]
    import pyarrow as pa, pyarrow.compute as pc
    chars = pa.array([chr(p) for p in points])
    for name, py in (("space", r"\s"), ):
        want = [bool(re.fullmatch(py, chr(p))) for p in points]
        assert pc.match_substring_regex(chars, "^" + c[name] + "$").to_pylist() == want


@pytest.mark.parametrize("preset", ["nemo", "fineweb"])
def test_gpu_calls_bind_to_cudf_signatures(preset):
    import inspect
    pytest.importorskip("cudf")
    from llmwork.engine import resolve
    calls = F.FuzzyDedup(preset=preset, threshold=0.85).gpu_calls()
    apis = {c.api for c in calls}
    assert {"cudf.Series.str.minhash", "cudf.Series.list.get", "cudf.DataFrame.hash_values", "cudf.DataFrame.merge"} <= apis
    assert ("cudf.Series.str.hash_character_ngrams" in apis) == (preset == "nemo")
    assert ("cudf.Series.str.translate" in apis) == (preset == "fineweb")
    for call in calls:
        fn, is_method = resolve(call.api)
        inspect.signature(fn).bind(*((None,) * is_method + call.args), **dict(call.kwargs))
        for r in call.regexes: r.program()


def test_simplify_text_agrees_with_datatrove(sample):
    text_mod = pytest.importorskip("datatrove.utils.text")
    texts = sample["text"].tolist()[::4] + TRICKY + ["Ünïcödé “quotes” — dashes… ％ 【brackets】 ٣٫١٤ numbers"]
    differ = [t for t in texts if F.simplify_text(t) != text_mod.simplify_text(t)]
    assert differ == []


# ---- LSH, verification, groups ----------------------------------------------------------------------------------

def test_banding_choice_and_curve():
    assert F.choose_banding(260, 0.8) == (32, 8)
    assert F.detection_probability(0.8, 32, 8) >= 0.995 > F.detection_probability(0.8, 20, 13)
    assert abs(F.detection_threshold(20, 13) - (1 / 20) ** (1 / 13)) < 1e-12


def test_exact_pairs_brute_force_matches_python_sets(sample):
    texts = F.planted_corpus(sample["text"], n_base=8, variants=4, seed=3)["text"]
    sets = [{t[i:i + 24] for i in range(len(t) - 23)} or {t} for t in texts]
    want = [[i, j] for i in range(len(sets)) for j in range(i + 1, len(sets))
            if len(sets[i] & sets[j]) >= 0.7 * len(sets[i] | sets[j])]
    got = F.exact_similar_pairs(F.shingle_sets(texts, "nemo"), 0.7)
    assert got[["left", "right"]].values.tolist() == want
    jac = [len(sets[i] & sets[j]) / len(sets[i] | sets[j]) for i, j in want]
    np.testing.assert_allclose(got["jaccard"], jac)


def test_result_does_not_depend_on_partitions_or_band_batches(sample):
    corpus = F.planted_corpus(sample["text"], n_base=40, variants=4, seed=7)
    with dask.config.set(scheduler="sync"):
        one = F.find_duplicates(dd.from_pandas(corpus, npartitions=1), "nemo", bands_per_iteration=32)
        many = F.find_duplicates(dd.from_pandas(corpus, npartitions=5), "nemo", bands_per_iteration=3)
    pd.testing.assert_frame_equal(one.duplicates, many.duplicates)
    assert one.stats["n_candidate_pairs"] == many.stats["n_candidate_pairs"] > 0
    # kept = smallest id of each group, every removed id points at a kept one
    kept = set(corpus["id"]) - set(one.duplicates["id"])
    assert set(one.duplicates["duplicate_of"]) <= kept
    assert (one.duplicates["duplicate_of"] < one.duplicates["id"]).all()


def test_verification_removes_false_candidates(sample):
    corpus = F.planted_corpus(sample["text"], n_base=60, variants=4, seed=11)
    with dask.config.set(scheduler="sync"):
        loose = F.find_duplicates(dd.from_pandas(corpus, npartitions=2), "nemo", verify=False)
        strict = F.find_duplicates(dd.from_pandas(corpus, npartitions=2), "nemo")
    assert strict.stats["n_verified_pairs"] < loose.stats["n_verified_pairs"] == loose.stats["n_candidate_pairs"]
    assert F.score_dedup(corpus, strict.duplicates)["precision"] > F.score_dedup(corpus, loose.duplicates)["precision"]


@pytest.mark.parametrize("preset", ["nemo", "fineweb"])
def test_planted_corpus_precision_and_recall(sample, preset):
    corpus = F.planted_corpus(sample["text"], n_base=250, variants=6, seed=2)
    with dask.config.set(scheduler="threads", num_workers=2):
        result = F.find_duplicates(dd.from_pandas(corpus, npartitions=2), preset, threshold=0.8)
    score = F.score_dedup(corpus, result.duplicates, preset, 0.8)
    assert score["true_pairs"] > 500
    assert score["precision"] >= 0.95 and score["recall"] >= 0.95, score


def test_chain_is_not_removed_for_its_far_end():
    # a~b and b~c at Jaccard 0.81, a~c at 0.65: connected components would remove c for a
    words = [f"w{i:03d}" for i in range(140)]
    corpus = pd.DataFrame({"id": ["c", "a", "b"], "text": [" ".join(words[s:s + 100]) for s in (20, 0, 10)]})
    assert F.shingle_sets(corpus["text"]).jaccard([1, 2, 1], [2, 0, 0]).round(2).tolist() == [0.81, 0.81, 0.65]
    with dask.config.set(scheduler="sync"):
        result = F.find_duplicates(dd.from_pandas(corpus, npartitions=2), "nemo", threshold=0.8, grouping="stars")
    assert result.stats["n_verified_pairs"] == 2 and result.stats["n_groups"] == 1
    assert result.duplicates.values.tolist() == [["b", "a"]]
    assert F.score_dedup(corpus, result.duplicates) == {"documents": 3, "true_pairs": 2, "found_pairs": 1, "recall": 0.5,
                                                         "reported_pairs": 1, "correct_reported": 1, "precision": 1.0}


def test_representatives_follow_ids_and_edges():
    ids = np.array(["z", "y", "x", "w", "v"], dtype=object)
    # x (smallest id of the component z, y, x) is kept; y and z are removed for it only where an edge joins them
    assert F.representatives(ids, [0, 1], [1, 2]).tolist() == [0, 2, 2, 3, 4]
    assert F.representatives(ids, [0, 1, 0], [1, 2, 2]).tolist() == [2, 2, 2, 3, 4]
    assert F.representatives(ids, [3, 4], [4, 0]).tolist() == [4, 1, 2, 4, 4]
    assert F._removals(ids, F.representatives(ids, [0, 1], [1, 2])).values.tolist() == [["y", "x"]]


def test_near_copies_from_0_6_to_1_precision_and_recall(sample):
    # copies at edit rates up to 5%: their Jaccard to the base spans 0.6 (5th percentile) to 1
    corpus = F.planted_corpus(sample["text"], n_base=300, variants=6, seed=0, rates=(0.005, 0.01, 0.02, 0.03, 0.04, 0.05))
    assert (corpus["parent"] == corpus["base"]).all()
    with dask.config.set(scheduler="sync"):
        result = F.find_duplicates(dd.from_pandas(corpus, npartitions=2), "nemo", threshold=0.8, grouping="stars")
    score = F.score_dedup(corpus, result.duplicates, "nemo", 0.8)
    assert score["true_pairs"] > 3000
    assert score["precision"] == 1.0 and score["recall"] >= 0.99, score


def test_chained_planting_edits_family_members(sample):
    corpus = F.planted_corpus(sample["text"], n_base=20, variants=5, seed=1, chain=True)
    copies = corpus[corpus["edit"] != "none"]
    assert (copies["parent"] != copies["base"]).any()
    assert all(p == b or (p.startswith(b + "-v") and p < i) for p, b, i in zip(copies["parent"], copies["base"], copies["id"]))
    assert F.planted_corpus(sample["text"], n_base=20, variants=5, seed=1)["text"].tolist() == \
        F.planted_corpus(sample["text"], n_base=20, variants=5, seed=1, rates=F.EDIT_RATES)["text"].tolist()


# ---- pipeline step and CLI --------------------------------------------------------------------------------------

def test_step_config_round_trip():
    from llmwork.clean import step_from_config
    step = F.FuzzyDedup(preset="fineweb", threshold=0.85, bands=10, rows=10)
    again = step_from_config(json.loads(json.dumps(step.config())))
    assert again.config() == step.config() and isinstance(again, F.FuzzyDedup)


def test_cli_dedup_end_to_end(sample, tmp_path):
    from llmwork.cli import main
    corpus = F.planted_corpus(sample["text"], n_base=30, variants=3, seed=5)
    lines = corpus[["id", "text"]].to_json(orient="records", lines=True).splitlines()
    lines.insert(10, '{"id": "broken", "text": ')  # a malformed line is skipped by validation, not fatal
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["dedup", str(tmp_path / "in.jsonl"), str(tmp_path / "out"), "--quiet", "--threshold", "0.8", "--persist"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    removed = pd.concat([pd.read_parquet(p) for p in (tmp_path / "out" / "removed").glob("*.parquet")])
    kept = pd.concat([pd.read_parquet(p) for p in (tmp_path / "out" / "kept").glob("*.parquet")])
    assert report["n_in"] == len(corpus) + 1 == len(kept) + len(removed)
    fuzzy = removed[removed["reason"] == "fuzzy_duplicate"]
    assert len(fuzzy) == report["fuzzy_dedup"]["n_duplicates"] > 0
    assert set(fuzzy["duplicate_of"]) <= set(kept["id"])
    assert main(["dedup", str(tmp_path / "in.jsonl"), str(tmp_path / "out"), "--quiet"]) == 2  # exists, no --overwrite
    assert main(["dedup", str(tmp_path / "in.jsonl"), str(tmp_path / "o2"), "--bands", "40", "--rows", "8"]) == 2
