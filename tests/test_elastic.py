"Elastic clusters: an adaptive cluster grows under a cleaning run, loses a worker, shrinks, and the output is unchanged."
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest

from llmwork import elastic
from conftest import shut


@pytest.fixture(autouse=True)
def _cpu_engine(monkeypatch):
    "These tests compare with pandas results: the cpu engine on any machine (subprocesses inherit it)."
    monkeypatch.setenv("LLMWORK_BACKEND", "cpu")


def _write_slice(path, n_files=8, per_file=300, start=0):
    "The first rows of the bundled Debian corpus, as `n_files` JSONL files (one partition each)."
    from llmwork.io import sample_corpus_path
    df = pd.read_json(sample_corpus_path(), lines=True, nrows=start + n_files * per_file).iloc[start:]
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        df.iloc[i * per_file:(i + 1) * per_file].to_json(path / f"part-{i:02d}.jsonl", orient="records", lines=True)
    return path


def _steps():
    from llmwork.clean import CleanWhitespace, ExactDedup, Filter, null_strings, register_step

    @dataclass
    class SlowKeepAll(Filter):
        "Keeps everything, slowly: gives the adaptive cluster a run long enough to grow and shrink under."
        name: ClassVar[str] = "slow_keep_all"
        def reasons(self, df):
            time.sleep(0.15)
            return null_strings(df["id"])
    return [CleanWhitespace(), SlowKeepAll(), {"step": "length", "min_chars": 80}, ExactDedup()]


def _read_dataset(path):
    files = sorted(Path(path).glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files]).sort_values("id").reset_index(drop=True)


def test_elastic_cluster_grows_shrinks_and_output_is_unchanged(tmp_path):
    import dask
    from llmwork.clean import Pipeline
    from llmwork.io import read_corpus
    src = _write_slice(tmp_path / "in")
    with dask.config.set({"scheduler": "synchronous", "dataframe.shuffle.method": "tasks"}):
        ref = Pipeline(_steps()).run(read_corpus(str(src)), tmp_path / "ref")
    client = elastic.elastic_client(0, 2, processes=False, protocol="tcp://", dashboard_address=None)
    retired = []
    def retire_one_when_two():
        # a worker leaves mid-run: the scheduler must move its work elsewhere without changing the result
        try:
            elastic.wait_for_worker_count(client, lambda n: n == 2, timeout=30)
            retired.extend(client.retire_workers([next(iter(client.nthreads()))], close_workers=True))
        except Exception as e:
            retired.append(e)
    try:
        with elastic.WorkerTrace(client, interval=0.02) as trace:
            assert elastic.wait_for_worker_count(client, lambda n: n == 0, timeout=10) == 0
            leaver = threading.Thread(target=retire_one_when_two); leaver.start()
            with client.as_current():  # not scheduler=client in dask.config: new worker processes get a pickled copy of the config
                got = Pipeline(_steps()).run(read_corpus(str(src)), tmp_path / "elastic")
            leaver.join(timeout=30)
            assert elastic.wait_for_worker_count(client, lambda n: n == 0, timeout=30) == 0  # idle workers retired
    finally:
        shut(client)
    counts = trace.counts
    assert counts[0] == 0 and max(counts) == 2 and counts[-1] == 0
    assert len(retired) == 1 and not isinstance(retired[0], Exception), retired
    assert [s for s in (ref["n_in"], ref["n_kept"])] == [got["n_in"], got["n_kept"]] and ref["n_removed"] > 0
    assert [(s["name"], s["n_removed"], s["reasons"]) for s in ref["steps"]] == [(s["name"], s["n_removed"], s["reasons"]) for s in got["steps"]]
    pd.testing.assert_frame_equal(_read_dataset(tmp_path / "ref" / "kept"), _read_dataset(tmp_path / "elastic" / "kept"))
    pd.testing.assert_frame_equal(_read_dataset(tmp_path / "ref" / "removed"), _read_dataset(tmp_path / "elastic" / "removed"))
