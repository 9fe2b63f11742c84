"Hyperparameter search: parallel trials with pruning, resume, `llmwork tune`."
import numpy as np
import pandas as pd
import pytest

from llmwork import tune


@pytest.fixture(autouse=True)
def _cpu_engine(monkeypatch):
    "These tests compare with pandas results: the cpu engine on any machine (subprocesses inherit it)."
    monkeypatch.setenv("LLMWORK_BACKEND", "cpu")


def _quadratic(params, report):
    loss = 0.0
    for step in range(1, 4):
        loss = (params["x"] - 0.3) ** 2 + params.get("y", 0) + 1 / step
        report(step, loss)
    return loss


def _always_fails(params, report):
    raise RuntimeError("boom")


def test_tune_parallel_prunes_and_finds_best(tmp_path, threads_client):
    res = tune.tune(_quadratic, {"x": {"low": -1.0, "high": 1.0}, "y": {"choices": [0, 1]}}, n_trials=12, client=threads_client,
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
    study = optuna.create_study(study_name="llmwork-tune", storage=tune.journal_storage(storage), direction="minimize")
    killed = study.ask()
    x = killed.suggest_float("x", -1.0, 1.0)  # left RUNNING, as a killed run leaves it
    res = tune.tune(_quadratic, {"x": {"low": -1.0, "high": 1.0}}, n_trials=3, client=threads_client, storage=storage)
    t = res.table
    assert t.state.iloc[0] == "FAIL"
    rerun = t[(t.x == x) & (t.state != "FAIL")]
    assert len(rerun) == 1 and rerun.number.iloc[0] > 0  # same parameters, run again as a new trial
    assert ((t.state == "COMPLETE") | (t.state == "PRUNED")).sum() == 3


def test_tune_bad_input(tmp_path, threads_client):
    with pytest.raises(ValueError, match="needs 'choices'"):
        tune.tune(_quadratic, {"x": {"lo": 0}}, n_trials=1, client=threads_client, storage=tmp_path / "a.journal")
    with pytest.raises(ValueError, match=r"All \d+ trials failed, the first with RuntimeError: boom;"):
        tune.tune(_always_fails, {"x": {"low": 0, "high": 1}}, n_trials=2, client=threads_client, storage=tmp_path / "b.journal")


def test_cli_tune_gpt(tmp_path, token_dirs, threads_client, capsys):
    import yaml
    from llmwork.cli import main
    data, _ = token_dirs
    config = {"train": "llmwork.tune:gpt_trial", "n_trials": 3, "storage": str(tmp_path / "study.journal"),
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


def test_cli_tune_every_trial_failing_is_one_sentence(tmp_path, capsys, monkeypatch):
    import yaml
    from llmwork.cli import main
    monkeypatch.setitem(tune.TRAIN_FUNCTIONS, "always_fails", _always_fails)
    cfg = {"train": "always_fails", "n_trials": 2, "storage": str(tmp_path / "s.journal"), "space": {"x": {"low": 0, "high": 1}}}
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["tune", str(tmp_path / "tune.yaml"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "All 2 trials failed, the first with RuntimeError: boom;" in err and "Traceback" not in err

