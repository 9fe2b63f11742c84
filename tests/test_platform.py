"Platform: compression, elastic clusters, incremental ingestion, model averaging, hyperparameter search."
import copy, json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from llmwork import platform


@pytest.fixture(autouse=True)
def _cpu_engine(monkeypatch):
    "These tests compare with pandas results: the cpu engine on any machine (subprocesses inherit it)."
    monkeypatch.setenv("LLMWORK_BACKEND", "cpu")


def _shut(client):
    "Close a client and its cluster; a slow worker shutdown on a loaded machine is not what these tests check."
    try:
        client.close(); client.cluster.close(timeout=60)
    except (TimeoutError, OSError):
        pass


# ---------------------------------------------------------------- compression
def _tiny_gpt(seed=0):
    from llmwork.models import GPT, GPTConfig
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=32))


def test_compress_gpt_both_engines(tmp_path):
    model = _tiny_gpt()
    tokens = torch.randint(0, 64, (8, 17), generator=torch.Generator().manual_seed(1))
    torch.save({"kind": "gpt", "model_config": model.config.to_dict(), "model": model.state_dict()}, tmp_path / "gpt.pt")
    for engine in platform.INT8_ENGINES:
        rep = platform.compress(tmp_path / "gpt.pt", tmp_path / f"gpt-{engine}.pt", int8=True, prune=0.3,
                                engine=engine, eval_tokens=tokens, new_tokens=4)
        assert rep["size_bytes"]["compressed"] < rep["size_bytes"]["original"]
        assert rep["sparsity"] == pytest.approx(0.3, abs=0.01)
        # the untrained GPT predicts nearly uniformly: both losses near log(64), and close to each other
        assert rep["original"]["eval_loss"] == pytest.approx(np.log(64), abs=0.3)
        assert abs(rep["change"]["eval_loss"]) < 0.05
        back = platform.load_compressed(tmp_path / f"gpt-{engine}.pt")
        assert platform.lm_eval_loss(back, tokens) == pytest.approx(rep["compressed"]["eval_loss"], abs=1e-6)
    # the original checkpoint is untouched: no zeros were written back into it
    assert platform.weight_sparsity(platform.load_model(tmp_path / "gpt.pt")) < 0.01


def test_int8_matches_a_reference_quantization():
    # per-row symmetric int8 of the weights, done by hand, must give the torchao layer's output
    torch.manual_seed(0)
    lin = nn.Linear(32, 16).eval()
    x = torch.randn(4, 32)
    scale = lin.weight.abs().amax(1, keepdim=True) / 127
    w8 = (lin.weight / scale).round().clamp(-128, 127) * scale
    ref = x @ w8.T + lin.bias
    q = platform.quantize_int8(copy.deepcopy(lin), "torchao")
    with torch.no_grad():
        assert torch.allclose(q(x), ref, atol=1e-2)
        assert not torch.allclose(lin(x), ref, atol=1e-6)  # quantization did change something


def test_compress_classifier_reports_accuracy(tmp_path):
    from llmwork.models import EncoderConfig, TextClassifier
    torch.manual_seed(0)
    clf = TextClassifier(EncoderConfig(vocab_size=64, n_labels=3, max_len=16, n_layer=1, n_head=2, n_embd=32, dropout=0.0))
    ids = torch.randint(1, 64, (12, 10))
    labels = clf(ids)[0].argmax(-1)  # the original's own predictions: its accuracy is exactly 1
    rep = platform.compress(clf, tmp_path / "clf.pt", int8=True, prune=0.0, eval_inputs={"input_ids": ids}, eval_labels=labels)
    assert rep["original"]["accuracy"] == 1.0
    assert rep["compressed"]["accuracy"] >= 0.75
    assert rep["change"]["accuracy"] == rep["compressed"]["accuracy"] - 1.0


def test_compress_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        platform.compress(tmp_path / "nope.pt", tmp_path / "out.pt")
    torch.save({"weights": 1}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="holds no model"):
        platform.compress(tmp_path / "junk.pt", tmp_path / "out.pt")
    with pytest.raises(ValueError, match="int8 engine"):
        platform.compress(nn.Linear(2, 2), tmp_path / "out.pt", engine="int3")


# ---------------------------------------------------------------- hyperparameter search
def _quadratic(params, report):
    loss = 0.0
    for step in range(1, 4):
        loss = (params["x"] - 0.3) ** 2 + params.get("y", 0) + 1 / step
        report(step, loss)
    return loss


def _always_fails(params, report):
    raise RuntimeError("boom")


@pytest.fixture
def threads_client():
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def test_tune_parallel_prunes_and_finds_best(tmp_path, threads_client):
    res = platform.tune(_quadratic, {"x": {"low": -1.0, "high": 1.0}, "y": {"choices": [0, 1]}}, n_trials=12, client=threads_client,
                        storage=tmp_path / "s.journal", reduction_factor=2, seed=3)
    t = res.table
    assert len(t) == 12 and set(t.state) <= {"COMPLETE", "PRUNED"}
    assert t.worker.nunique() == 2                       # trials ran on both workers
    assert (t.state == "PRUNED").sum() >= 3              # successive halving stopped the poor ones
    # cross-check against the function itself: the best trial's loss is the quadratic at its x
    assert res.best_loss == pytest.approx((res.best_params["x"] - 0.3) ** 2 + res.best_params["y"] + 1 / 3)
    assert res.best_loss == t.loss[t.state == "COMPLETE"].min()
    fig = res.figure()
    assert fig.data[0].type == "parcoords"


def test_tune_resumes_an_interrupted_trial(tmp_path, threads_client):
    import optuna
    storage = tmp_path / "s.journal"
    study = optuna.create_study(study_name="llmwork-tune", storage=platform.journal_storage(storage), direction="minimize")
    killed = study.ask()
    x = killed.suggest_float("x", -1.0, 1.0)  # left RUNNING, as a killed run leaves it
    res = platform.tune(_quadratic, {"x": {"low": -1.0, "high": 1.0}}, n_trials=3, client=threads_client, storage=storage)
    t = res.table
    assert t.state.iloc[0] == "FAIL"
    rerun = t[(t.x == x) & (t.state != "FAIL")]
    assert len(rerun) == 1 and rerun.number.iloc[0] > 0  # same parameters, run again as a new trial
    assert ((t.state == "COMPLETE") | (t.state == "PRUNED")).sum() == 3


def test_tune_bad_input(tmp_path, threads_client):
    with pytest.raises(ValueError, match="needs 'choices'"):
        platform.tune(_quadratic, {"x": {"lo": 0}}, n_trials=1, client=threads_client, storage=tmp_path / "a.journal")
    with pytest.raises(ValueError, match=r"All \d+ trials failed, the first with RuntimeError: boom;"):
        platform.tune(_always_fails, {"x": {"low": 0, "high": 1}}, n_trials=2, client=threads_client, storage=tmp_path / "b.journal")


# ---------------------------------------------------------------- elastic clusters
import threading
import time
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd


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
    client = platform.elastic_client(0, 2, processes=False, protocol="tcp://", dashboard_address=None)
    retired = []
    def retire_one_when_two():
        # a worker leaves mid-run: the scheduler must move its work elsewhere without changing the result
        try:
            platform.wait_for_worker_count(client, lambda n: n == 2, timeout=30)
            retired.extend(client.retire_workers([next(iter(client.nthreads()))], close_workers=True))
        except Exception as e:
            retired.append(e)
    try:
        with platform.WorkerTrace(client, interval=0.02) as trace:
            assert platform.wait_for_worker_count(client, lambda n: n == 0, timeout=10) == 0
            leaver = threading.Thread(target=retire_one_when_two); leaver.start()
            with client.as_current():  # not scheduler=client in dask.config: new worker processes get a pickled copy of the config
                got = Pipeline(_steps()).run(read_corpus(str(src)), tmp_path / "elastic")
            leaver.join(timeout=30)
            assert platform.wait_for_worker_count(client, lambda n: n == 0, timeout=30) == 0  # idle workers retired
    finally:
        _shut(client)
    counts = trace.counts
    assert counts[0] == 0 and max(counts) == 2 and counts[-1] == 0
    assert len(retired) == 1 and not isinstance(retired[0], Exception), retired
    assert [s for s in (ref["n_in"], ref["n_kept"])] == [got["n_in"], got["n_kept"]] and ref["n_removed"] > 0
    assert [(s["name"], s["n_removed"], s["reasons"]) for s in ref["steps"]] == [(s["name"], s["n_removed"], s["reasons"]) for s in got["steps"]]
    pd.testing.assert_frame_equal(_read_dataset(tmp_path / "ref" / "kept"), _read_dataset(tmp_path / "elastic" / "kept"))
    pd.testing.assert_frame_equal(_read_dataset(tmp_path / "ref" / "removed"), _read_dataset(tmp_path / "elastic" / "removed"))


# ---------------------------------------------------------------- model averaging (2 ranks, gloo, Dask workers)
@pytest.fixture(scope="module")
def token_dirs(tmp_path_factory):
    import dask
    import dask.dataframe as dd
    from llmwork.io import sample_corpus_path
    from llmwork.models import ByteTokenizer, pack_tokens
    root = tmp_path_factory.mktemp("tokens")
    docs = pd.read_json(sample_corpus_path(), lines=True, nrows=3000)[["text"]]
    with dask.config.set({"scheduler": "synchronous", "dataframe.shuffle.method": "tasks"}):
        pack_tokens(dd.from_pandas(docs, npartitions=4), ByteTokenizer(), root / "all")
    return root / "all", platform.split_token_shards(root / "all", root / "local", 2)


@pytest.fixture(scope="module")
def rank_client():
    from llmwork.backend import get_client
    client = get_client("cpu", n_workers=2, threads_per_worker=1, dashboard_address=None)
    client.wait_for_workers(2, timeout=120)
    yield client
    _shut(client)


def _config(data, out, **kw):
    from llmwork.train import TrainConfig
    base = dict(data=str(data), out_dir=str(out), model="gpt-tiny", device="cpu", threads=1,
                model_overrides=dict(n_layer=1, n_head=2, n_embd=32, block_size=32), batch_size=8, steps=8, lr=0.05,
                warmup_steps=0, weight_decay=0.0, grad_clip=0.0, eval_every=0, checkpoint_every=0)
    return TrainConfig(**{**base, **kw})


def _final_state(out):
    from llmwork.train import load_checkpoint
    return load_checkpoint(out)["model"]


def test_local_sgd_h1_with_sgd_equals_ddp(tmp_path, token_dirs, rank_client):
    data, _ = token_dirs
    runs = {}
    for name, strategy, H in [("ddp", "ddp", 1), ("local1", "local_sgd", 1), ("local4", "local_sgd", 4)]:
        res = platform.launch_averaged(_config(data, tmp_path / name), rank_client, strategy, H=H, optimizer="sgd").result(timeout=300)
        assert res["step"] == 8
        runs[name] = _final_state(tmp_path / name)
    for k in runs["ddp"]:
        assert torch.allclose(runs["ddp"][k], runs["local1"][k], atol=1e-6), k
    # the comparison can fail: four local steps between averages is a different algorithm
    assert any(not torch.allclose(runs["ddp"][k], runs["local4"][k], atol=1e-6) for k in runs["ddp"])


def _common_eval_loss(state, data):
    "Eval loss of a final model on the same held-out windows of all the data, whatever the strategy."
    from llmwork.models import GPT, gpt_config
    from llmwork.train import TokenBatches
    model = GPT(gpt_config("gpt-tiny", vocab_size=257, n_layer=1, n_head=2, n_embd=32, block_size=32))
    model.load_state_dict(state)
    model.eval()
    batches = TokenBatches(str(data), 16, 32, seed=0, eval_batches=8)
    with torch.no_grad():
        return float(np.mean([model(**b)[1].item() for b in batches.eval_iter(0, 1)]))


def test_fedavg_within_5_percent_of_ddp(tmp_path, token_dirs, rank_client):
    data, local = token_dirs
    losses = {}
    for name, strategy, source in [("ddp", "ddp", data), ("fedavg", "fedavg", local)]:
        cfg = _config(source, tmp_path / name, steps=60, lr=3e-3, warmup_steps=5, batch_size=16, eval_every=20, weight_decay=0.1)
        res = platform.launch_averaged(cfg, rank_client, strategy, H=4, optimizer="adamw").result(timeout=300)
        assert [m["step"] for m in res["history"] if "eval_loss" in m] == [20, 40, 60]
        losses[name] = _common_eval_loss(_final_state(tmp_path / name), data)
    start = np.log(257)
    assert losses["ddp"] < start - 1.0            # it learned something: far below uniform guessing
    assert abs(losses["fedavg"] - losses["ddp"]) / losses["ddp"] < 0.05, losses


# ---------------------------------------------------------------- incremental ingestion
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
    reports = [platform.ingest(str(b), tmp_path / "corpus", pipeline=PIPELINE if i == 0 else None) for i, b in enumerate(batches)]
    got = platform.corpus_documents(tmp_path / "corpus").compute().set_index("id").sort_index()
    assert got.index.tolist() == kept.index.tolist()
    assert got["text"].tolist() == kept["text"].tolist()
    assert got["section"].tolist() == kept["section"].tolist()      # other columns ride along
    status = platform.corpus_status(tmp_path / "corpus").set_index("id")
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
    platform.ingest(str(batches[0]), tmp_path / "corpus", pipeline=PIPELINE)
    seen = {"hash": 0, "minhash": 0}
    real_hash, real_buckets = clean.text_hash, fuzzy._partition_buckets
    monkeypatch.setattr(clean, "text_hash", lambda t: (seen.__setitem__("hash", seen["hash"] + len(t)), real_hash(t))[1])
    monkeypatch.setattr(fuzzy, "_partition_buckets", lambda part, *a: (seen.__setitem__("minhash", seen["minhash"] + len(part)), real_buckets(part, *a))[1])
    rep = platform.ingest(str(batches[1]), tmp_path / "corpus")
    after_filters = rep["steps"][-2]["n_in"]                # documents reaching exact dedup in batch 2
    assert seen["hash"] == after_filters                    # no old document was hashed again
    assert seen["minhash"] == rep["steps"][-1]["n_in"] < 200


def test_ingest_interrupted_before_commit_changes_nothing(tmp_path, monkeypatch):
    batches, _ = _batches(tmp_path / "in", n=2, per=150)
    platform.ingest(str(batches[0]), tmp_path / "corpus", pipeline=PIPELINE)
    before = platform.corpus_documents(tmp_path / "corpus").compute().sort_values("id").reset_index(drop=True)
    state = (tmp_path / "corpus" / "corpus.json").read_text()
    def crash(*a, **k): raise KeyboardInterrupt("killed")
    monkeypatch.setattr(platform, "_write_state", crash)
    with pytest.raises(KeyboardInterrupt):
        platform.ingest(str(batches[1]), tmp_path / "corpus")
    monkeypatch.undo()
    assert (tmp_path / "corpus" / "corpus.json").read_text() == state
    pd.testing.assert_frame_equal(platform.corpus_documents(tmp_path / "corpus").compute().sort_values("id").reset_index(drop=True), before)
    rep = platform.ingest(str(batches[1]), tmp_path / "corpus")   # the leftovers are cleared and the batch goes in
    assert rep["version"] == 2
    assert sorted(p.name for p in (tmp_path / "corpus" / "versions").iterdir()) == ["v0001", "v0002"]
    assert len(list((tmp_path / "corpus" / "index").glob("status-*.parquet"))) == 1


def test_ingest_bad_input(tmp_path):
    batches, _ = _batches(tmp_path / "in", n=1, per=50)
    with pytest.raises(ValueError, match="not an llmwork corpus yet"):
        platform.ingest(str(batches[0]), tmp_path / "corpus")
    with pytest.raises(ValueError, match="per-document steps then exact_dedup"):
        platform.ingest(str(batches[0]), tmp_path / "c2", pipeline={"steps": [{"step": "exact_dedup"}, {"step": "length", "min_chars": 5}]})
    platform.ingest(str(batches[0]), tmp_path / "corpus", pipeline=PIPELINE)
    with pytest.raises(ValueError, match="ids already in"):
        platform.ingest(str(batches[0]), tmp_path / "corpus")
    with pytest.raises(ValueError, match="different pipeline"):
        platform.ingest(str(batches[0]), tmp_path / "corpus", pipeline={"steps": [{"step": "exact_dedup"}]})


# ---------------------------------------------------------------- command line
def test_cli_ingest_and_compress(tmp_path, token_dirs, capsys):
    from llmwork.cli import main
    from llmwork.train import RankContext
    batches, _ = _batches(tmp_path / "in", n=2, per=100)
    (tmp_path / "pipeline.json").write_text(json.dumps(PIPELINE))
    assert main(["ingest", str(batches[0]), str(tmp_path / "corpus"), "--pipeline", str(tmp_path / "pipeline.json")]) == 0
    assert main(["ingest", str(batches[1]), str(tmp_path / "corpus")]) == 0
    out = capsys.readouterr().out
    assert "v0001 batch-0.jsonl: 100 in" in out and "v0002 batch-1.jsonl: 100 in" in out
    # a real training checkpoint, compressed from the command line, evaluated on the shards it was trained on
    data, _ = token_dirs
    res = platform.AveragedTraining("adamw")(_config(data, tmp_path / "run", steps=20, lr=3e-3), RankContext())
    assert main(["compress", res["checkpoint"], str(tmp_path / "small.pt"), "--int8", "--prune", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "eval loss" in out and "tokens/s" in out
    assert platform.load_compressed(tmp_path / "small.pt") is not None
    assert main(["compress", res["checkpoint"], str(tmp_path / "x.pt")]) == 2   # neither --int8 nor --prune
    assert "Nothing to do" in capsys.readouterr().err


def test_cli_tune_gpt(tmp_path, token_dirs, threads_client, capsys):
    import yaml
    from llmwork.cli import main
    data, _ = token_dirs
    config = {"train": "llmwork.platform:gpt_trial", "n_trials": 3, "storage": str(tmp_path / "study.journal"),
              "fixed": {"data": str(data), "steps": 6, "batch_size": 4, "block_size": 32, "n_layer": 1, "n_embd": 32, "n_head": 2, "eval_batches": 1},
              "space": {"lr": {"low": 1e-3, "high": 1e-2, "log": True}}}
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(config))
    assert main(["tune", str(tmp_path / "tune.yaml"), "--scheduler", threads_client.scheduler.address]) == 0
    table = pd.read_csv(tmp_path / "study-trials.csv")
    assert len(table) == 3 and table.loss.notna().all() and (table.loss < np.log(257) + 0.5).all()
    assert (tmp_path / "study-parcoords.html").stat().st_size > 10_000
    assert "best loss" in capsys.readouterr().out
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"n_trials": 2}))
    assert main(["tune", str(tmp_path / "bad.yaml")]) == 2
    assert "needs a 'space'" in capsys.readouterr().err


def test_cli_compress_refuses_existing_output_bad_eval_data_and_bad_checkpoints(tmp_path, capsys):
    from llmwork.cli import main
    model = _tiny_gpt()
    ck = tmp_path / "gpt.pt"
    torch.save({"kind": "gpt", "model_config": model.config.to_dict(), "model": model.state_dict()}, ck)
    (tmp_path / "out.pt").write_bytes(b"mine")
    assert main(["compress", str(ck), str(tmp_path / "out.pt"), "--int8"]) == 2
    assert "out.pt already exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "out.pt").read_bytes() == b"mine"
    assert main(["compress", str(ck), str(tmp_path / "new.pt"), "--int8", "--eval-data", str(tmp_path / "nope")]) == 2
    assert "--eval-data" in capsys.readouterr().err and not (tmp_path / "new.pt").exists()
    assert main(["compress", str(ck), str(tmp_path / "out.pt"), "--int8", "--overwrite"]) == 0
    back = platform.load_compressed(tmp_path / "out.pt")
    assert type(back).__name__ == "GPT" and platform.load_compressed(tmp_path / "out.pt", like=_tiny_gpt()) is not None
    capsys.readouterr()
    for content, name in ((b"", "empty.pt"), (b"not a checkpoint", "garbage.pt")):
        (tmp_path / name).write_bytes(content)
        assert main(["compress", str(tmp_path / name), str(tmp_path / f"{name}.out"), "--int8"]) == 2
        err = capsys.readouterr().err
        assert f"{name} is not a readable llmwork checkpoint" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="is not a model written by this llmwork's compress"):
        platform.load_compressed(ck)
    leftovers = sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name)
    assert leftovers == []


def test_cli_tune_every_trial_failing_is_one_sentence(tmp_path, capsys, monkeypatch):
    import yaml
    from llmwork.cli import main
    monkeypatch.setitem(platform.TRAIN_FUNCTIONS, "always_fails", _always_fails)
    cfg = {"train": "always_fails", "n_trials": 2, "storage": str(tmp_path / "s.journal"), "space": {"x": {"low": 0, "high": 1}}}
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["tune", str(tmp_path / "tune.yaml"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "All 2 trials failed, the first with RuntimeError: boom;" in err and "Traceback" not in err
