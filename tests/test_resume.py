"""Fault injection for resumable cleaning (issue 22): `llmwork clean` is SIGKILLed at several points of a run over a
multi-partition corpus, and `--resume` must finish with kept/, removed/ and report.json identical to an uninterrupted
run, leaving nothing behind. Also: what a killed run's leftovers do to the next run, a full disk, truncated input."""
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import pandas as pd
import pytest

from llmwork.clean import without_times
from llmwork.cli import main
from llmwork.io import read_sample_corpus

CONFIG = "steps:\n  - step: clean_whitespace\n  - step: gopher_quality\n  - step: exact_dedup\n  - step: length\n    min_chars: 60\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    "Six JSONL files (six partitions) of real sample documents, with exact duplicates across files."
    root = tmp_path_factory.mktemp("resume")
    rows = read_sample_corpus(backend="cpu").head(1500)[["id", "text"]].to_dict("records")
    rows += [dict(r, id=r["id"] + "-copy") for r in rows[::7]]
    folder = root / "corpus"
    folder.mkdir()
    for k in range(6):
        (folder / f"part{k}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[k::6]))
    (root / "config.yaml").write_text(CONFIG)
    return root


def clean_args(corpus, out, *extra):
    return [str(Path(sys.executable).parent / "llmwork"), "clean", str(corpus / "corpus"), str(out), "--config",
            str(corpus / "config.yaml"), "--backend", "cpu", "--quiet", *extra]


def run_clean(corpus, out, *extra):
    env = dict(os.environ, DASK_SCHEDULER="synchronous")  # one partition at a time: the kill points are exact
    return subprocess.run(clean_args(corpus, out, *extra), capture_output=True, text=True, env=env)


def markers(out: Path, pattern: str):
    return list(out.parent.glob(f".{out.name}.tmp-*/_resume/{pattern}"))


def kill_at(corpus, out, pattern: str, count: int):
    "Start `llmwork clean`, SIGKILL it as soon as `count` completion markers matching `pattern` exist."
    env = dict(os.environ, DASK_SCHEDULER="synchronous")
    proc = subprocess.Popen(clean_args(corpus, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while len(markers(out, pattern)) < count:
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
        assert time.time() < deadline, "no progress marker appeared"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def dataset(path: Path):
    return {p.name: pd.read_parquet(p) for p in sorted(path.glob("*.parquet"))}


def report(out: Path):
    return without_times(json.loads((out / "report.json").read_text()))


@pytest.fixture(scope="module")
def reference(corpus):
    out = corpus / "reference"
    done = run_clean(corpus, out)
    assert done.returncode == 0, done.stderr
    return out


def assert_identical(out: Path, reference: Path):
    assert report(out) == report(reference)
    for name in ("kept", "removed"):
        got, want = dataset(out / name), dataset(reference / name)
        assert list(got) == list(want)
        for f in want: pd.testing.assert_frame_equal(got[f], want[f])
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")) == []  # no tmp, lock, old


@pytest.mark.parametrize("pattern,count", [("stage-00/done-0*.json", 2),  # inside the per-partition pass
                                           ("stage-01/done-kept-*.json", 2),  # inside exact dedup
                                           ("stage-02/done-0*.json", 3)])  # inside the pass after dedup
def test_resume_after_sigkill_is_identical_to_an_uninterrupted_run(corpus, reference, tmp_path, pattern, count):
    out = tmp_path / "out"
    kill_at(corpus, out, pattern, count)
    done_before = {p.name for p in markers(out, "stage-*/done-*.json")}
    assert len(done_before) >= count and not out.exists()
    resumed = run_clean(corpus, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_identical(out, reference)


def interrupt(monkeypatch, corpus, out, after: int, config=None):
    "Run in this process, stopped by Ctrl-C once `after` partitions are marked done (a Ctrl-C keeps the checkpoints)."
    import llmwork.clean as clean
    real, written, lock = clean._write_marker, [], threading.Lock()
    def write_marker(path, facts):
        if path.name.startswith("done-"):
            with lock:  # the partitions run on a thread pool
                if len(written) == after: raise KeyboardInterrupt
                written.append(path)
        real(path, facts)
    with monkeypatch.context() as m, dask.config.set(scheduler="sync"):  # no task still running after the Ctrl-C
        m.setattr(clean, "_write_marker", write_marker)
        with pytest.raises(KeyboardInterrupt):
            clean.clean_corpus(corpus / "corpus", out, config=config or str(corpus / "config.yaml"), backend="cpu")


def test_a_resumed_run_recomputes_only_unfinished_partitions(corpus, reference, tmp_path, monkeypatch):
    import llmwork.clean as clean
    out = tmp_path / "out"
    interrupt(monkeypatch, corpus, out, after=4)
    done = len(markers(out, "stage-00/done-0*.json"))
    assert done == 4
    calls, real = [], clean.apply_partition_steps
    monkeypatch.setattr(clean, "apply_partition_steps", lambda df, steps: calls.append(len(df)) or real(df, steps))
    clean.clean_corpus(corpus / "corpus", out, config=str(corpus / "config.yaml"), backend="cpu", resume=True)
    assert len(calls) == (6 - done) + 6  # the partitions of the first pass left, then the six after dedup
    assert_identical(out, reference)


def test_without_resume_a_killed_run_is_named_not_discarded(corpus, reference, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    interrupt(monkeypatch, corpus, out, after=2)
    leftover = list(out.parent.glob(f".{out.name}.tmp-*"))
    done = len(markers(out, "stage-*/done-*.json"))
    assert main(clean_args(corpus, out)[1:]) == 2
    err = capsys.readouterr().err.strip()
    assert done == 2 and err.count("\n") == 0 and f"left {done} completed partitions" in err and "pass --resume" in err, err
    assert leftover and all(p.exists() for p in leftover)  # still there
    assert main(clean_args(corpus, out, "--overwrite")[1:]) == 0  # starts over, and cleans up
    capsys.readouterr()
    assert_identical(out, reference)


def test_resume_refuses_another_config(corpus, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    interrupt(monkeypatch, corpus, out, after=1)
    other = tmp_path / "other.yaml"
    other.write_text("steps:\n  - step: gopher_quality\n")
    assert main(["clean", str(corpus / "corpus"), str(out), "--config", str(other), "--quiet", "--resume"]) == 2
    assert "ran another pipeline or input, so it cannot be resumed" in capsys.readouterr().err


def test_resume_with_nothing_interrupted_runs_fresh_and_a_finished_output_says_so(corpus, reference, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(clean_args(corpus, out, "--resume")[1:]) == 0
    capsys.readouterr()
    assert_identical(out, reference)
    assert main(clean_args(corpus, out, "--resume")[1:]) == 2
    assert "is complete: there is nothing to resume" in capsys.readouterr().err


def test_a_full_disk_is_one_sentence(corpus, tmp_path, capsys, monkeypatch):
    import llmwork.clean as clean
    def full(df, path, *a, **k): raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(clean, "_write_frame", full)
    assert main(clean_args(corpus, tmp_path / "out")[1:]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "No space left on the device writing" in err and "--resume" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing completed, so nothing kept


def test_a_truncated_gzip_is_one_sentence_naming_it(tmp_path, capsys):
    import gzip
    rows = read_sample_corpus(backend="cpu").head(300)[["id", "text"]].to_dict("records")
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
    bad = tmp_path / "cut.jsonl.gz"
    bad.write_bytes(data[: len(data) // 2])
    for command in (["clean", str(bad), str(tmp_path / "out")], ["dedup", str(bad), str(tmp_path / "dd")]):
        assert main([*command, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"{bad} is truncated or not valid gzip data" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.jsonl.gz"]


def test_pack_tokens_leaves_no_temporary_folder_when_it_fails(tmp_path):
    import dask.dataframe as dd
    from llmwork.models import ByteTokenizer, pack_tokens, pack_texts

    class Failing(ByteTokenizer):
        def encode_batch(self, texts):
            if any("boom" in t for t in texts): raise OSError(errno.ENOSPC, "No space left on device")
            return super().encode_batch(texts)

    ddf = dd.from_pandas(pd.DataFrame({"text": ["fine", "also fine", "boom"]}), npartitions=3)
    with pytest.raises(OSError):
        pack_tokens(ddf, Failing(), tmp_path / "tokens")
    with pytest.raises(OSError):
        pack_texts(["fine", "boom"], Failing(), tmp_path / "tokens", n_shards=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_output_under_a_file_is_one_sentence(tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "text": "some text here"}\n')
    (tmp_path / "afile").write_text("x")
    assert main(["clean", str(corpus), str(tmp_path / "afile" / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"is under {tmp_path / 'afile'}, which is a file" in err, err
