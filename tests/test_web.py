"""From the web to a corpus, end to end: `llmwork extract` over a multi-file WARC set on a Dask LocalCluster (every
response record kept or removed with a reason, counted independently with warcio), Trafilatura extraction equal to
datatrove's WarcReader + Trafilatura for the same records, and the new steps' cuDF calls conforming (without a GPU)."""
import argparse, contextlib, importlib.util, io, json
from pathlib import Path

import pandas as pd
import pytest

from llmwork.extract import ExtractText, add_commands, extract_corpus
from llmwork.clean import apply_partition_steps
from llmwork.warc import read_warc

FIXTURES = Path(__file__).parent / "data" / "warc"
REFUSED = {"http_404": 1, "not_html": 2, "truncated": 1, "undecodable": 1}


def warcio_response_ids():
    "The response record ids of the fixtures, read with warcio (another library than the reader's FastWARC)."
    from warcio.archiveiterator import ArchiveIterator
    ids = []
    for path in sorted(FIXTURES.glob("*.warc*")):
        with open(path, "rb") as fh:
            try:
                for record in ArchiveIterator(fh):
                    if record.rec_type == "response": ids.append(record.rec_headers.get_header("WARC-Record-ID"))
            except Exception:  # warcio may stop at the cut member; it has yielded its headers by then
                pass
    return ids


def run_extract(*argv):
    parser = argparse.ArgumentParser(prog="llmwork")
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["extract", *map(str, argv)])
    out = io.StringIO()
    with contextlib.redirect_stdout(out): status = args.func(args)
    return status, out.getvalue()


def test_extract_on_a_local_cluster_reconciles_with_the_warc_records(tmp_path):
    distributed = pytest.importorskip("distributed")
    ids = warcio_response_ids()
    assert len(ids) == 42 and len(set(ids)) == 42
    inputs = [FIXTURES / "crawl-00000.warc.gz", FIXTURES / "crawl-00001.warc.gz", FIXTURES / "crawl-00002.warc"]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        status, out = run_extract(*inputs, tmp_path / "out", "--scheduler", cluster.scheduler_address,
                                  "--partition-size", "20000", "--quiet")
        workers = {w for w in cluster.scheduler.workers}
        assert read_warc(inputs, partition_size=20000).npartitions > len(inputs)  # the files were split by record offsets
        with pytest.raises(ValueError, match="No clients found"):  # the command closed its client to the given scheduler
            distributed.default_client()
    assert status == 0 and "of 42 documents" in out
    assert len(workers) == 2
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    kept = pd.read_parquet(tmp_path / "out" / "kept")
    removed = pd.read_parquet(tmp_path / "out" / "removed")
    assert report["n_in"] == 42 == len(kept) + len(removed)
    assert sorted(kept.id.tolist() + removed.id.tolist()) == sorted(ids)
    assert removed.reason.notna().all() and removed.step.notna().all()
    assert report["steps"][0]["reasons"] == REFUSED
    assert removed[removed.step == "validate"].reason.value_counts().to_dict() == REFUSED
    assert (kept.text.str.len() > 0).all() and not kept.text.str.contains("<html", regex=False).any()


def test_extract_refuses_bad_input_in_one_sentence(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(Exception, match="c.jsonl: not a WARC file"): run_extract(tmp_path / "c.jsonl", tmp_path / "o")
    with pytest.raises(Exception, match="nope.warc.gz: no such file"): run_extract(tmp_path / "nope.warc.gz", tmp_path / "o")
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="already exists"): run_extract(FIXTURES, tmp_path / "exists")


def test_trafilatura_text_equals_datatrove_for_the_same_records():
    pytest.importorskip("datatrove")
    from datatrove.pipeline.extractors import Trafilatura
    try: from datatrove.pipeline.readers import WarcReader; import cchardet, magic  # noqa: F401  WarcReader's own needs
    except ImportError: pytest.skip("datatrove's WarcReader needs faust-cchardet and python-magic")
    from trafilatura.deduplication import LRU_TEST
    theirs = {}
    extractor = Trafilatura()
    for path in sorted(FIXTURES.glob("*.warc*")):
        LRU_TEST.clear()  # a datatrove task extracts in a fresh process: its deduplication cache starts empty
        reader = WarcReader(str(path.parent), glob_pattern=path.name)
        try:
            for doc in reader.read_file(path.name):
                text = extractor.extract(doc.text)
                if text: theirs[doc.id] = text
        except EOFError:  # datatrove's reader stops with an error at the cut gzip member; we refuse that record
            assert path.name == "crawl-00001.warc.gz"
    corpus = read_warc(str(FIXTURES), partition_size=None)  # one partition per file, as one datatrove task per file
    ours = {}
    for i in range(corpus.npartitions):
        kept, removed, _ = apply_partition_steps(corpus.partitions[i].compute(), [ExtractText("trafilatura")])
        ours.update(zip(kept.id, kept.text))
    # datatrove drops the 404 only at extraction (it reads non-200 pages) and the undecodable page at reading;
    # every page both keep has the same text, and every page we keep datatrove keeps
    assert len(ours) >= 35
    assert set(ours) <= set(theirs)
    assert {i: theirs[i] for i in ours} == ours


@pytest.mark.skipif(importlib.util.find_spec("pylibcudf") is None, reason="needs the gpu extra (no GPU needed)")
def test_the_new_steps_cudf_calls_and_patterns_conform():
    from llmwork import engine
    from llmwork.gpu_check import check_call
    from llmwork.language import LanguageId
    from llmwork.url_filter import UrlFilter
    frame = read_warc(str(FIXTURES)).compute().reset_index(drop=True)
    frame = frame[frame.read_error.isna()].drop(columns="read_error").reset_index(drop=True)
    steps = [ExtractText("resiliparse"), LanguageId(), UrlFilter(domains=["python.org"], hosts=["docs.python.org"], urls=["https://x/"],
             banned_words=["casino"], soft_banned_words=["bet", "poker"], banned_subwords=["xxx"])]
    with engine.recording() as calls: apply_partition_steps(frame, steps)
    findings = [check_call(c) for c in calls]
    assert {c.api for c in calls} >= {"cudf.Series.to_pandas", "cudf.from_pandas", "pylibcudf.strings.extract.extract"}
    assert [f for f in findings if f.problem] == []
    assert sum(f.patterns for f in findings) >= 5
