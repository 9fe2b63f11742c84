"Incremental ingestion: batches against a versioned corpus give what one run over all of them gives."
import json
from pathlib import Path

import pandas as pd
import pytest

from llmwork import ingest


@pytest.fixture(autouse=True)
def _cpu_engine(monkeypatch):
    "These tests compare with pandas results: the cpu engine on any machine (subprocesses inherit it)."
    monkeypatch.setenv("LLMWORK_BACKEND", "cpu")


def _read_dataset(path):
    files = sorted(Path(path).glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files]).sort_values("id").reset_index(drop=True)


PIPELINE = {"steps": [{"step": "unicode_normalize"}, {"step": "length", "min_chars": 150},
                      {"step": "exact_dedup"}, {"step": "fuzzy_dedup", "threshold": 0.75}]}


def _batches(root, n=3, per=300, seed=7):
    "Shuffled slice of the Debian corpus as `n` JSONL batches, plus one file with everything."
    from llmwork.io import sample_corpus_path
    df = pd.read_json(sample_corpus_path(), lines=True, nrows=n * per).sample(frac=1.0, random_state=seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n): df.iloc[i * per:(i + 1) * per].to_json(root / f"batch-{i}.jsonl", orient="records", lines=True)
    df.to_json(root / "all.jsonl", orient="records", lines=True)
    return [root / f"batch-{i}.jsonl" for i in range(n)], root / "all.jsonl"


def _one_run(all_file, out):
    import dask
    import llmwork.fuzzy  # noqa: F401
    from llmwork.clean import Pipeline
    from llmwork.io import read_corpus
    with dask.config.set({"scheduler": "synchronous", "dataframe.shuffle.method": "tasks"}):
        report = Pipeline.from_config(PIPELINE).run(read_corpus(str(all_file)), out)
    return report, _read_dataset(out / "kept").set_index("id"), _read_dataset(out / "removed").set_index("id")


def test_ingest_three_batches_equal_one_run(tmp_path):
    batches, everything = _batches(tmp_path / "in")
    report, kept, removed = _one_run(everything, tmp_path / "one")
    reports = [ingest.ingest(str(b), tmp_path / "corpus", pipeline=PIPELINE if i == 0 else None) for i, b in enumerate(batches)]
    got = ingest.corpus_documents(tmp_path / "corpus").compute().set_index("id").sort_index()
    assert got.index.tolist() == kept.index.tolist()
    assert got["text"].tolist() == kept["text"].tolist()
    assert got["section"].tolist() == kept["section"].tolist()      # other columns ride along
    status = ingest.corpus_status(tmp_path / "corpus").set_index("id")
    gone = status[status.state == "removed"].sort_index()
    assert gone.index.tolist() == removed.index.tolist()
    assert gone[["step", "reason", "duplicate_of"]].fillna("").values.tolist() == removed[["step", "reason", "duplicate_of"]].fillna("").values.tolist()
    assert {"exact_dedup", "fuzzy_dedup", "length"} <= set(gone.step)  # every kind of removal happened
    # each version's report reconciles, and together they account for the corpus
    for r in reports:
        assert r["n_in"] == r["n_kept"] + sum(s["n_removed"] for s in r["steps"])
    assert sum(r["retracted"]["n"] for r in reports) > 0
    assert reports[-1]["corpus_kept_after"] == report["n_kept"] == sum(r["n_kept"] - r["retracted"]["n"] for r in reports)
    versions = json.loads((tmp_path / "corpus" / "corpus.json").read_text())["versions"]
    assert [v["name"] for v in versions] == ["v0001", "v0002", "v0003"]


def test_ingest_hashes_only_the_new_batch(tmp_path, monkeypatch):
    from llmwork import clean, fuzzy
    batches, _ = _batches(tmp_path / "in", n=2, per=200)
    ingest.ingest(str(batches[0]), tmp_path / "corpus", pipeline=PIPELINE)
    seen = {"hash": 0, "minhash": 0}
    real_hash, real_buckets = clean.text_hash, fuzzy.partition_buckets
    monkeypatch.setattr(clean, "text_hash", lambda t: (seen.__setitem__("hash", seen["hash"] + len(t)), real_hash(t))[1])
    monkeypatch.setattr(fuzzy, "partition_buckets", lambda part, *a: (seen.__setitem__("minhash", seen["minhash"] + len(part)), real_buckets(part, *a))[1])
    rep = ingest.ingest(str(batches[1]), tmp_path / "corpus")
    after_filters = rep["steps"][-2]["n_in"]                # documents reaching exact dedup in batch 2
    assert seen["hash"] == after_filters                    # no old document was hashed again
    assert seen["minhash"] == rep["steps"][-1]["n_in"] < 200


def test_ingest_interrupted_before_commit_changes_nothing(tmp_path, monkeypatch):
    batches, _ = _batches(tmp_path / "in", n=2, per=150)
    ingest.ingest(str(batches[0]), tmp_path / "corpus", pipeline=PIPELINE)
    before = ingest.corpus_documents(tmp_path / "corpus").compute().sort_values("id").reset_index(drop=True)
    state = (tmp_path / "corpus" / "corpus.json").read_text()
    def crash(*a, **k): raise KeyboardInterrupt("killed")
    monkeypatch.setattr(ingest, "_write_state", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest.ingest(str(batches[1]), tmp_path / "corpus")
    monkeypatch.undo()
    assert (tmp_path / "corpus" / "corpus.json").read_text() == state
    pd.testing.assert_frame_equal(ingest.corpus_documents(tmp_path / "corpus").compute().sort_values("id").reset_index(drop=True), before)
    rep = ingest.ingest(str(batches[1]), tmp_path / "corpus")   # the leftovers are cleared and the batch goes in
    assert rep["version"] == 2
    assert sorted(p.name for p in (tmp_path / "corpus" / "versions").iterdir()) == ["v0001", "v0002"]
    assert len(list((tmp_path / "corpus" / "index").glob("status-*.parquet"))) == 1


def test_ingest_bad_input(tmp_path):
    batches, _ = _batches(tmp_path / "in", n=1, per=50)
    with pytest.raises(ValueError, match="not an llmwork corpus yet"):
        ingest.ingest(str(batches[0]), tmp_path / "corpus")
    with pytest.raises(ValueError, match="per-document steps then exact_dedup"):
        ingest.ingest(str(batches[0]), tmp_path / "c2", pipeline={"steps": [{"step": "exact_dedup"}, {"step": "length", "min_chars": 5}]})
    ingest.ingest(str(batches[0]), tmp_path / "corpus", pipeline=PIPELINE)
    with pytest.raises(ValueError, match="ids already in"):
        ingest.ingest(str(batches[0]), tmp_path / "corpus")
    with pytest.raises(ValueError, match="different pipeline"):
        ingest.ingest(str(batches[0]), tmp_path / "corpus", pipeline={"steps": [{"step": "exact_dedup"}]})


def test_cli_ingest_two_batches(tmp_path, capsys):
    from llmwork.cli import main
    batches, _ = _batches(tmp_path / "in", n=2, per=100)
    (tmp_path / "pipeline.json").write_text(json.dumps(PIPELINE))
    assert main(["ingest", str(batches[0]), str(tmp_path / "corpus"), "--pipeline", str(tmp_path / "pipeline.json")]) == 0
    assert main(["ingest", str(batches[1]), str(tmp_path / "corpus")]) == 0
    out = capsys.readouterr().out
    assert "v0001 batch-0.jsonl: 100 in" in out and "v0002 batch-1.jsonl: 100 in" in out
    assert len(ingest.corpus_status(tmp_path / "corpus")) == 200
