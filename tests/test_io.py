"""Corpus I/O beyond the notebook's examples: fsspec URLs, compression, partitions, and bad input end to end."""
import gzip
import json
import subprocess
import sys
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from llmwork.io import CorpusError, read_corpus, read_sample_corpus, write_corpus

LLMWORK = str(Path(sys.executable).with_name("llmwork"))  # the console script installed beside this Python


@pytest.fixture(autouse=True)
def _cpu_engine(monkeypatch):
    "These tests compare with pandas results: the cpu engine on any machine (subprocesses inherit it)."
    monkeypatch.setenv("LLMWORK_BACKEND", "cpu")


def test_reads_fsspec_memory_url_and_glob():
    fs = fsspec.filesystem("memory")
    fs.pipe("/corpus/a.jsonl", b'{"text": "alpha"}\n{"text": "beta"}\n')
    fs.pipe("/corpus/b.jsonl.gz", gzip.compress(b'{"text": "gamma", "id": 5}\n'))
    df = read_corpus("memory://corpus/*.jsonl*").compute()
    assert df.to_dict("records") == [{"id": "a.jsonl:000000001", "text": "alpha"},
                                     {"id": "a.jsonl:000000002", "text": "beta"},
                                     {"id": "5", "text": "gamma"}]


def test_write_to_fsspec_url_is_atomic_and_readable():
    fs = fsspec.filesystem("memory")
    fs.pipe("/in/x.jsonl", b'{"text": "b", "id": "2"}\n{"text": "a", "id": "1"}\n')
    write_corpus(read_corpus("memory://in/x.jsonl"), "memory://out/ds")
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/out/ds", detail=False)) == ["_manifest.json", "part-00000.parquet"]
    back = read_corpus("memory://out/ds").compute()
    assert back.id.tolist() == ["1", "2"]  # sorted by id within the file
    assert not [p for p in fs.ls("/out", detail=False) if ".tmp-" in p]


def test_blank_lines_keep_line_numbers_in_ids(tmp_path):
    p = tmp_path / "gaps.jsonl"
    p.write_text('{"text": "a"}\n\n\n{"text": "b"}\n')
    assert read_corpus(str(p)).compute().id.tolist() == ["gaps.jsonl:000000001", "gaps.jsonl:000000004"]


def test_write_sorts_ids_across_files_of_the_sample(tmp_path):
    ddf = read_sample_corpus()
    write_corpus(ddf, str(tmp_path / "ds"))
    from llmwork.io import read_manifest
    files = read_manifest(str(tmp_path / "ds"))["files"]
    assert sum(f["rows"] for f in files) == 63905
    ranges = [(f["id_min"], f["id_max"]) for f in files]
    assert ranges == sorted(ranges) and all(a[1] < b[0] for a, b in zip(ranges, ranges[1:]))


def test_non_string_text_in_a_later_file_is_named(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "fine"}\n')
    (tmp_path / "b.jsonl").write_text('{"text": "fine"}\n{"text": ["a", "list"]}\n')
    with pytest.raises(CorpusError, match=r"b.jsonl, line 2: 'text' is a list"):
        read_corpus(str(tmp_path / "*.jsonl")).compute()


def test_missing_text_column_in_csv_lists_columns(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("id,body\n1,x\n")
    with pytest.raises(CorpusError, match=r"t.csv: no text column 'text'; columns found: id, body"):
        read_corpus(str(p))
    assert read_corpus(str(p), text_col="body").compute().text.tolist() == ["x"]


def test_id_and_text_column_clash_is_explained(tmp_path):
    p = tmp_path / "clash.jsonl"
    p.write_text('{"body": "x", "text": "y"}\n')
    with pytest.raises(CorpusError, match="has both 'body' and 'text' columns"):
        read_corpus(str(p), text_col="body").compute()


def test_skip_keeps_every_line_of_a_bad_gzip_file(tmp_path):
    p = tmp_path / "bad.jsonl.gz"
    p.write_bytes(gzip.compress(b'{"text": "ok"}\nnot json\n{"text": 1.5}\n'))
    df = read_corpus(str(p), on_error="skip").compute()
    assert df.read_error.fillna("").tolist() == ["", "malformed", "non_string_text"]
    assert len(df) == 3


@pytest.mark.parametrize("suffix,compress", [(".gz", gzip.compress), (".xz", __import__("lzma").compress)])
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_truncated_compressed_file_is_one_sentence_naming_it(tmp_path, suffix, compress, on_error):
    "Every command reads through read_corpus, so clean, dedup, train, ingest and cluster all get this sentence."
    data = compress("".join(json.dumps({"id": str(i), "text": f"document {i}"}) + "\n" for i in range(3000)).encode())
    bad = tmp_path / f"cut.jsonl{suffix}"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorpusError, match=f"^{bad} is truncated or not valid (gzip|xz) data .*: copy or download it again"):
        read_corpus(str(bad), on_error=on_error).compute(scheduler="sync")


def test_sample_corpus_is_real_and_complete():
    ddf = read_sample_corpus()
    df = ddf.compute()
    assert len(df) == 63905 and df.id.is_unique
    assert df.text.duplicated().sum() == 2470
    assert df.loc[df.id == "debian:python3", "section"].item() == "python"


def test_cli_info_and_bad_input_exit_codes(tmp_path):
    info = subprocess.run([LLMWORK, "info", "--json"], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["backend"] in ("cpu", "gpu")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "a"}\n')
    run = subprocess.run([LLMWORK, "demo", "--input", str(bad), "--out-dir", str(tmp_path / "o"), "--stages", "summary"],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.startswith("llmwork demo: error: bad.jsonl: no text column 'text'; columns found: body"), run.stderr
    assert "Traceback" not in run.stderr
    clean = tmp_path / "c.jsonl"
    clean.write_text('{"text": "a b c"}\n{oops\n')
    run = subprocess.run([LLMWORK, "demo", "--input", str(clean), "--out-dir", str(tmp_path / "p"), "--stages", "summary"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr  # the demo keeps the unreadable line as a document rather than failing
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["documents"] == 2


def test_row_groups_have_the_requested_size(tmp_path):
    import dask.dataframe as dd
    import pyarrow.parquet as pq
    frame = pd.DataFrame({"id": [f"d{i:02d}" for i in range(10)], "text": ["t"] * 10})
    write_corpus(dd.from_pandas(frame, npartitions=2), str(tmp_path / "out"), row_group_size=3)
    files = sorted((tmp_path / "out").glob("*.parquet"))
    sizes = [[pq.ParquetFile(f).metadata.row_group(g).num_rows for g in range(pq.ParquetFile(f).metadata.num_row_groups)]
             for f in files]
    assert sum(map(sum, sizes)) == 10 and all(max(s) <= 3 for s in sizes), sizes


def test_pandas_writes_stay_on_pyarrow_when_the_global_backend_is_cudf(tmp_path):
    "Another library may set dataframe.backend=cudf for the process: pandas partitions must still write with pyarrow."
    import dask
    import dask.dataframe as dd
    from llmwork.io import read_manifest
    frame = pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"]})
    with dask.config.set({"dataframe.backend": "cudf"}):  # without the explicit engine this picks CudfEngine (no GPU here)
        write_corpus(dd.from_pandas(frame, npartitions=1), str(tmp_path / "out"), row_group_size=1)
    assert [(e["rows"], e["row_groups"]) for e in read_manifest(str(tmp_path / "out"))["files"]] == [(2, 2)]


def test_get_client_sets_no_global_dataframe_backend():
    import dask
    from llmwork.backend import get_client
    c = get_client("cpu", n_workers=1, processes=False, dashboard_address=None)
    try:
        assert dask.config.get("dataframe.backend", "pandas") == "pandas"
    finally:
        c.close(); c.cluster.close()


def test_parquet_write_options_name_the_engine_and_its_keyword():
    import inspect
    import dask.dataframe as dd
    from llmwork.io import parquet_write_options
    ddf = dd.from_pandas(pd.DataFrame({"id": ["a"], "text": ["x"]}), npartitions=1)
    assert parquet_write_options(ddf, 7) == {"engine": "pyarrow", "row_group_size": 7}
    fake = type("Meta", (), {"__module__": "cudf.core.dataframe"})()
    opts = parquet_write_options(type("D", (), {"_meta": fake})(), 7)
    assert opts["row_group_size_rows"] == 7 and "row_group_size" not in opts
    assert "row_group_size_rows" in inspect.getsource(opts["engine"].write_partition)


def test_gpu_reader_falls_back_to_the_host_only_for_files_it_cannot_check():
    from llmwork.io import _may_hold_non_string
    assert not _may_hold_non_string(b'{"id": 1, "text": "a"}\n{"text": null}\n', "text")
    assert _may_hold_non_string(b'{"text": "a"}\n{"text": 4.5}\n', "text")
    assert _may_hold_non_string(b'{"text": {"nested": "x"}}\n', "text")
    assert not _may_hold_non_string(b'{"text": "quoted \\"text\\": 3 inside"}\n', "text")
    assert _may_hold_non_string(b'{"body": true}\n', "body")
