"Training loop, checkpoints, exact resume, DDP on a 2-worker Dask cluster, stop, dead worker, CLI."
import json
import os
import time
from dataclasses import replace

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import torch

from llmwork.backend import get_client
from llmwork.launch import RunError, launch
from llmwork.models import ByteTokenizer, EncoderConfig, TextClassifier, pack_tokens, pad_batch
from llmwork.train import (ExampleBatches, RankContext, TrainConfig, WarmupCosine, generate_text, latest_checkpoint,
                           list_checkpoints, load_checkpoint, load_model, save_checkpoint, train)

SAMPLE = "llmwork/data/debian_descriptions.jsonl.gz"
SMALL = {"n_layer": 2, "n_embd": 32, "n_head": 2, "block_size": 32}


@pytest.fixture(autouse=True)
def _cpu_engine(monkeypatch):
    "These tests compare with pandas results: the cpu engine on any machine (subprocesses inherit it)."
    monkeypatch.setenv("LLMWORK_BACKEND", "cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    texts = pd.read_json(SAMPLE, lines=True, nrows=1500)[["id", "text"]]
    texts.to_json(d / "corpus.jsonl", orient="records", lines=True)
    with dask.config.set(scheduler="sync"):
        pack_tokens(dd.from_pandas(texts, npartitions=3), ByteTokenizer(), d / "tokens")
    return d


@pytest.fixture(scope="module")
def client():
    c = get_client("cpu", n_workers=2, dashboard_address=None)
    c.wait_for_workers(2, timeout=120)
    yield c
    cluster = c.cluster
    c.close()
    cluster.close()


def config(corpus, out, **kw):
    base = TrainConfig(data=str(corpus / "tokens"), out_dir=str(out), model_overrides=SMALL, batch_size=8, steps=12,
                       lr=3e-3, warmup_steps=2, eval_every=0, checkpoint_every=0, threads=1, device="cpu")
    return replace(base, **kw)


def losses(res):
    return [m["loss"] for m in res["history"]]


def test_schedule_warms_up_then_decays_to_min():
    s = WarmupCosine(warmup_steps=4, total_steps=14, min_ratio=0.1)
    np.testing.assert_allclose([s(i) for i in (0, 3, 4, 9, 14, 20)], [0.25, 1.0, 1.0, 0.55, 0.1, 0.1])


def test_exact_resume_single_process(corpus, tmp_path):
    full = train(config(corpus, tmp_path / "full", grad_accum=2))
    calls = iter(range(10**6))
    first = train(config(corpus, tmp_path / "cut", grad_accum=2), RankContext(stop_requested=lambda: next(calls) >= 5))
    assert (first["step"], first["stopped"]) == (5, True)
    second = train(config(corpus, tmp_path / "cut", grad_accum=2, resume=True))
    assert second["start_step"] == 5 and second["step"] == 12
    assert losses(first) + losses(second) == losses(full)  # bit for bit
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "cut")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k])
    log = [json.loads(l) for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))


def test_gradient_accumulation_equals_full_batch(corpus, tmp_path):
    a = train(config(corpus, tmp_path / "a", steps=4, checkpoint_every=4))
    b = train(config(corpus, tmp_path / "b", steps=4, checkpoint_every=4, grad_accum=4))
    wa, wb = load_checkpoint(a["checkpoint"])["model"], load_checkpoint(b["checkpoint"])["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


def test_checkpoints_rotate_and_load_safely(tmp_path):
    for s in range(1, 6):
        save_checkpoint({"step": s, "model": {}}, tmp_path, keep=2)
    assert [c["step"] for c in list_checkpoints(tmp_path)] == [4, 5]
    assert latest_checkpoint(tmp_path).endswith("step-00000005.pt")
    torch.save({"step": 1, "model": {}, "evil": WarmupCosine(1, 2)}, tmp_path / "pickled.pt")  # arbitrary objects
    with pytest.raises(ValueError, match="not a readable llmwork checkpoint"):
        load_checkpoint(tmp_path / "pickled.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No checkpoints under"):
        load_checkpoint(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="No checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resume_errors(corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        train(config(corpus, tmp_path / "empty", resume=True))
    train(config(corpus, tmp_path / "r", steps=2, checkpoint_every=2))
    bigger = config(corpus, tmp_path / "r", steps=4, resume=True, model_overrides={**SMALL, "n_layer": 3})
    with pytest.raises(ValueError, match="not the gpt with config"):
        train(bigger)
    with pytest.raises(ValueError, match="divisible"):
        train(config(corpus, tmp_path / "x", batch_size=6, grad_accum=4))


def test_classifier_trains_with_the_same_loop(tmp_path):
    torch.manual_seed(0)
    tok = ByteTokenizer()
    words = ["7 days", "red car", "42 ways", "blue sky", "9 lives", "cat nap", "3 bears", "old oak"] * 4
    ids, mask = pad_batch([tok.encode(w) for w in words])
    y = torch.tensor([int(w[0].isdigit()) for w in words])
    data = ExampleBatches({"input_ids": ids, "attention_mask": mask, "labels": y}, batch_size=8,
                          eval_tensors={"input_ids": ids, "attention_mask": mask, "labels": y})
    model = TextClassifier(EncoderConfig(n_labels=2, n_layer=1, n_embd=32, n_head=2, dropout=0.0, max_len=16))
    cfg = TrainConfig(out_dir=str(tmp_path), batch_size=8, steps=40, lr=3e-3, warmup_steps=2, eval_every=40,
                      checkpoint_every=40, threads=1)
    res = train(cfg, model=model, data=data, tokenizer=tok)
    assert res["eval_loss"] < 0.2
    again, tok2 = load_model(res["checkpoint"])
    assert again(ids, mask)[0].argmax(-1).tolist() == y.tolist()
    assert type(tok2) is ByteTokenizer


def test_generate_from_checkpoint_is_seeded(corpus, tmp_path):
    train(config(corpus, tmp_path, steps=3, checkpoint_every=3))
    a = generate_text(tmp_path, "This package", max_new_tokens=15, seed=3)
    assert a == generate_text(tmp_path, "This package", max_new_tokens=15, seed=3)
    assert generate_text(tmp_path, "x", max_new_tokens=5, temperature=0) == generate_text(tmp_path, "x", max_new_tokens=5, temperature=0)


# --- DDP on Dask -----------------------------------------------------------------------------------------------

def test_two_gloo_ranks_equal_one_process(corpus, client, tmp_path):
    one = train(config(corpus, tmp_path / "one", checkpoint_every=12))
    seen = []
    run = launch(train, config(corpus, tmp_path / "two", checkpoint_every=12), client)
    run.on_metrics(lambda m: seen.append(m["step"]))
    two = run.result(timeout=300)
    assert run.status == "finished" and len(run.workers) == 2
    w1, w2 = load_checkpoint(one["checkpoint"])["model"], load_checkpoint(two["checkpoint"])["model"]
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(losses(two), losses(one), rtol=1e-5)
    assert [m["step"] for m in run.metrics] == list(range(1, 13)) == seen
    assert {"loss", "lr", "tokens_per_s", "step"} <= set(run.metrics[0])


def test_stop_then_resume_gives_the_uninterrupted_curve(corpus, client, tmp_path):
    cfg = config(corpus, tmp_path / "cut", steps=100_000)
    run = launch(train, cfg, client)
    run.on_metrics(lambda m: m["step"] >= 2 and run.stop())  # stop() from a metrics callback (the client's event loop)
    first = run.result(timeout=300)
    k = first["step"]
    assert run.status == "stopped" and first["stopped"] and 2 <= k < 100_000
    assert [c["step"] for c in run.checkpoints()] == [k]
    # resume with DataLoader worker processes inside the Dask workers (non-daemonic workers)
    second = launch(train, replace(cfg, resume=True, stop_after=k + 6, num_workers=1), client).result(timeout=300)
    assert (second["start_step"], second["step"]) == (k, k + 6)
    whole = launch(train, replace(cfg, out_dir=str(tmp_path / "whole"), stop_after=k + 6), client).result(timeout=300)
    assert losses(first) + losses(second) == losses(whole)  # bit for bit


def test_dead_worker_fails_clearly_and_resumes(corpus, client, tmp_path):
    cfg = config(corpus, tmp_path / "crash", steps=400, checkpoint_every=4)
    run = launch(train, cfg, client)
    while len(run.metrics) < 6 and not run.done():
        time.sleep(0.05)
    victim = run.workers[1]
    os.kill(client.run(os.getpid, workers=[victim])[victim], 9)
    with pytest.raises(RunError, match=r"rank 1\) left the cluster.*--resume"):
        run.result(timeout=120)
    assert run.status == "failed"
    saved = list_checkpoints(tmp_path / "crash")[-1]["step"]
    assert saved >= 4
    client.wait_for_workers(2, timeout=120)
    res = launch(train, replace(cfg, steps=saved + 2, resume=True), client).result(timeout=300)
    assert (res["start_step"], res["step"]) == (saved, saved + 2)


def test_launch_bad_input(corpus, client, tmp_path):
    with pytest.raises(ValueError, match="only 2 workers"):
        launch(train, config(corpus, tmp_path), client, n_ranks=3, wait_for_workers_s=0.5)
    with pytest.raises(ValueError, match="divisible"):
        launch(train, config(corpus, tmp_path, batch_size=7), client)
    with pytest.raises(ValueError, match="Unknown strategy"):
        launch(train, config(corpus, tmp_path), client, strategy="gossip")


def test_cli_train_workers_2_then_resume_and_generate(corpus, tmp_path, capsys, monkeypatch):
    import shutil
    from llmwork.cli import main
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cli"
    args = ["train", str(corpus / "corpus.jsonl"), "cli", "--workers", "2", "--steps", "6", "--batch-size", "8",
            "--block-size", "32", "--checkpoint-every", "3", "--eval-every", "3", "--quiet", "--backend", "cpu"]
    assert main(args) == 0  # a relative OUT_DIR: train_config.json records out_dir "cli"
    assert [c["step"] for c in list_checkpoints(out)] == [3, 6]
    assert main(args) == 2  # refuses to overwrite a run
    assert "--resume" in capsys.readouterr().err
    # resume a copy, from another working directory: it writes into the copy, never into the recorded out_dir
    shutil.copytree(out, tmp_path / "copy")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["train", str(corpus / "corpus.jsonl"), str(tmp_path / "copy"), "--resume", "--steps", "8", "--quiet", "--workers", "2"]) == 0
    assert [c["step"] for c in list_checkpoints(tmp_path / "copy")] == [3, 6, 8]
    assert [c["step"] for c in list_checkpoints(out)] == [3, 6]  # the original is untouched
    assert [json.loads(l)["step"] for l in (tmp_path / "copy" / "metrics.jsonl").read_text().splitlines()] == list(range(1, 9))
    capsys.readouterr()
    assert main(["train", str(corpus / "corpus.jsonl"), str(tmp_path / "copy"), "--resume", "--quiet"]) == 2
    assert "already finished 8 of 8 steps; pass --steps N above 8" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "copy"
    assert main(["generate", str(out), "--prompt", "This package", "--max-tokens", "10"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("This package")
    assert main(["generate", str(tmp_path / "nope"), "--prompt", "x"]) == 2


def test_rank_devices_one_distinct_gpu_per_rank():
    from llmwork.launch import rank_devices
    # dask-cuda: each worker's CUDA_VISIBLE_DEVICES starts with its own GPU
    assert rank_devices([{"host": "h", "visible": f"{i},{(i + 1) % 4},{(i + 2) % 4},{(i + 3) % 4}", "count": 4}
                         for i in range(4)]) == ["cuda:0"] * 4
    # plain `dask worker`s on a 4-GPU host: all see 0,1,2,3 -> local ranks take cuda:0..3
    assert rank_devices([{"host": "h", "visible": None, "count": 4}] * 4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    # two hosts with plain workers: local rank counts per host
    infos = [{"host": h, "visible": None, "count": 2} for h in ("a", "a", "b", "b")]
    assert rank_devices(infos) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    with pytest.raises(RunError, match="Rank 2 would share GPU 0 with rank 0 on host a"):
        rank_devices([{"host": "a", "visible": None, "count": 2}] * 3)
    with pytest.raises(RunError, match="NCCL needs one GPU per rank"):
        rank_devices([{"host": "a", "visible": "3", "count": 1}] * 2)


def test_cuda_worker_count_refuses_more_workers_than_gpus():
    from llmwork.backend import BackendError, cuda_worker_count
    assert cuda_worker_count(None, 2) == 2 and cuda_worker_count(1, 2) == 1
    with pytest.raises(BackendError, match="n_workers=2 but only 1 GPU is visible"):
        cuda_worker_count(2, 1)


def test_training_path_imports_without_dask_or_pandas(tmp_path):
    "What the GPU check runs on a torch-only machine: llmwork.models and llmwork.train, and pack_texts, with no Dask."
    import subprocess, sys
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('dask', 'distributed', 'pandas', 'cudf', 'dask_cudf'): raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from llmwork.models import ByteTokenizer, pack_texts\n"
            "from llmwork.train import TrainConfig, train\n"
            f"s = pack_texts(['hello world'] * 50, ByteTokenizer(), {str(tmp_path / 't')!r}, n_shards=2)\n"
            "print(s.n_tokens)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(50 * 12)


def test_gpu_check_script_without_a_gpu_exits_0_and_says_so():
    import subprocess
    if torch.cuda.is_available(): pytest.skip("this machine has a GPU")
    out = subprocess.run(["bash", "bench/gpu_check.sh"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no CUDA device" in out.stdout
    for part in ("train", "ddp", "torch_check", "nbdev_cuda"):
        assert any(l.startswith(part) and "skipped" in l for l in out.stdout.splitlines()), part


def test_cli_train_refuses_bad_numbers_before_any_work(corpus, tmp_path, capsys):
    from llmwork.cli import main
    base = ["train", str(corpus / "corpus.jsonl"), str(tmp_path / "run"), "--quiet", "--backend", "cpu"]
    for extra, message in ((["--steps", "0"], "--steps must be at least 1, got 0."),
                           (["--batch-size", "0"], "--batch-size must be at least 1, got 0."),
                           (["--lr", "-1"], "--lr must be positive, got -1.0."),
                           (["--workers", "3", "--batch-size", "8"], "batch_size=8 must be divisible by ranks x grad_accum = 3 x 1.")):
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "run").exists()  # refused before tokenizing
    ck = tmp_path / "ck"
    res = train(config(corpus, ck, steps=2))
    for extra, message in ((["--temperature", "-0.5"], "--temperature must be 0 (greedy) or positive"),
                           (["--max-tokens", "-3"], "--max-tokens must be at least 1, got -3.")):
        assert main(["generate", res["checkpoint"], "--prompt", "x"] + extra) == 2
        assert message in capsys.readouterr().err
    for content, name in ((b"", "empty.pt"), (b"garbage bytes", "garbage.pt")):
        (tmp_path / name).write_bytes(content)
        assert main(["generate", str(tmp_path / name), "--prompt", "x"]) == 2
        err = capsys.readouterr().err
        assert f"{name} is not a readable llmwork checkpoint" in err and "Traceback" not in err


def test_metrics_are_appended_as_the_run_goes_and_resume_continues_them(corpus, tmp_path):
    class Crash(Exception): pass
    def crash_at_5(m):
        if m["step"] == 5: raise Crash()
    cfg = config(corpus, tmp_path / "run", checkpoint_every=4, steps=8)
    with pytest.raises(Crash):
        train(cfg, RankContext(report=crash_at_5))
    log = tmp_path / "run" / "metrics.jsonl"
    assert [json.loads(l)["step"] for l in log.read_text().splitlines()] == [1, 2, 3, 4, 5]  # the crashed run's curve
    res = train(replace(cfg, resume=True))
    rows = [json.loads(l) for l in log.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))  # step 5 is trained again from the step-4 checkpoint
    assert [r["loss"] for r in rows[4:]] == losses(res)
    assert not [p.name for p in (tmp_path / "run").iterdir() if ".tmp" in p.name]


def test_rendezvous_store_listens_on_loopback_only_for_a_local_cluster(client):
    import socket
    from datetime import timedelta
    from llmwork.launch import free_port, rendezvous_host, rendezvous_store
    worker = sorted(client.scheduler_info(n_workers=-1)["workers"])[0]
    host = rendezvous_host(worker)
    assert host == "127.0.0.1"  # a local cluster's workers listen on loopback, and so does the store
    port = free_port(host)
    store, address = rendezvous_store(host, port, True, 1, timedelta(seconds=5))
    try:
        assert address == ("127.0.0.1", port)
        store.set("k", "v")
        assert rendezvous_store(host, port, False, 1, timedelta(seconds=5))[0].get("k") == b"v"
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect(("192.0.2.1", 9)); other = probe.getsockname()[0]  # this machine's non-loopback address, if any
        except OSError: other = None
        finally: probe.close()
        if other and not other.startswith("127."):
            with pytest.raises(OSError):
                socket.create_connection((other, port), timeout=2).close()
    finally:
        del store
