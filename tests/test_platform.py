"Platform: compression, elastic clusters, incremental ingestion, model averaging, hyperparameter search."
import copy, json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from llmwork import platform


# ---------------------------------------------------------------- compression
def _tiny_gpt(seed=0):
    from llmwork.models import GPT, GPTConfig
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=32))


def test_compress_gpt_both_engines(tmp_path):
    model = _tiny_gpt()
    tokens = torch.randint(0, 64, (8, 17), generator=torch.Generator().manual_seed(1))
    torch.save(model, tmp_path / "gpt.pt")
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
    assert platform.weight_sparsity(torch.load(tmp_path / "gpt.pt", weights_only=False)) < 0.01


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


@pytest.fixture(scope="module")
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
    with pytest.raises(RuntimeError, match=r"All \d+ trials failed"):
        platform.tune(_always_fails, {"x": {"low": 0, "high": 1}}, n_trials=2, client=threads_client, storage=tmp_path / "b.journal")
