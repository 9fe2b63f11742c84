"Compression: pruning, int8 quantization, the size/speed/quality report, `llmwork compress`."
import copy

import numpy as np
import pytest
import torch
from torch import nn

from llmwork import compress
from conftest import small_config


@pytest.fixture(autouse=True)
def _cpu_engine(monkeypatch):
    "These tests compare with pandas results: the cpu engine on any machine (subprocesses inherit it)."
    monkeypatch.setenv("LLMWORK_BACKEND", "cpu")


def _tiny_gpt(seed=0):
    from llmwork.models import GPT, GPTConfig
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=32))


def test_compress_gpt_both_engines(tmp_path):
    model = _tiny_gpt()
    tokens = torch.randint(0, 64, (8, 17), generator=torch.Generator().manual_seed(1))
    torch.save({"kind": "gpt", "model_config": model.config.to_dict(), "model": model.state_dict()}, tmp_path / "gpt.pt")
    for engine in compress.INT8_ENGINES:
        rep = compress.compress(tmp_path / "gpt.pt", tmp_path / f"gpt-{engine}.pt", int8=True, prune=0.3,
                                engine=engine, eval_tokens=tokens, new_tokens=4)
        assert rep["size_bytes"]["compressed"] < rep["size_bytes"]["original"]
        assert rep["sparsity"] == pytest.approx(0.3, abs=0.01)
        # the untrained GPT predicts nearly uniformly: both losses near log(64), and close to each other
        assert rep["original"]["eval_loss"] == pytest.approx(np.log(64), abs=0.3)
        assert abs(rep["change"]["eval_loss"]) < 0.05
        back = compress.load_compressed(tmp_path / f"gpt-{engine}.pt")
        assert compress.lm_eval_loss(back, tokens) == pytest.approx(rep["compressed"]["eval_loss"], abs=1e-6)
    # the original checkpoint is untouched: no zeros were written back into it
    assert compress.weight_sparsity(compress.load_checkpoint_model(tmp_path / "gpt.pt")) < 0.01


def test_int8_matches_a_reference_quantization():
    # per-row symmetric int8 of the weights, done by hand, must give the torchao layer's output
    torch.manual_seed(0)
    lin = nn.Linear(32, 16).eval()
    x = torch.randn(4, 32)
    scale = lin.weight.abs().amax(1, keepdim=True) / 127
    w8 = (lin.weight / scale).round().clamp(-128, 127) * scale
    ref = x @ w8.T + lin.bias
    q = compress.quantize_int8(copy.deepcopy(lin), "torchao")
    with torch.no_grad():
        assert torch.allclose(q(x), ref, atol=1e-2)
        assert not torch.allclose(lin(x), ref, atol=1e-6)  # quantization did change something


def test_compress_classifier_reports_accuracy(tmp_path):
    from llmwork.models import EncoderConfig, TextClassifier
    torch.manual_seed(0)
    clf = TextClassifier(EncoderConfig(vocab_size=64, n_labels=3, max_len=16, n_layer=1, n_head=2, n_embd=32, dropout=0.0))
    ids = torch.randint(1, 64, (12, 10))
    labels = clf(ids)[0].argmax(-1)  # the original's own predictions: its accuracy is exactly 1
    rep = compress.compress(clf, tmp_path / "clf.pt", int8=True, prune=0.0, eval_inputs={"input_ids": ids}, eval_labels=labels)
    assert rep["original"]["accuracy"] == 1.0
    assert rep["compressed"]["accuracy"] >= 0.75
    assert rep["change"]["accuracy"] == rep["compressed"]["accuracy"] - 1.0


def test_compress_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        compress.compress(tmp_path / "nope.pt", tmp_path / "out.pt")
    torch.save({"weights": 1}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="holds no model"):
        compress.compress(tmp_path / "junk.pt", tmp_path / "out.pt")
    with pytest.raises(ValueError, match="int8 engine"):
        compress.compress(nn.Linear(2, 2), tmp_path / "out.pt", engine="int3")


def test_cli_compress_a_trained_checkpoint(tmp_path, token_dirs, capsys):
    "A real training checkpoint, compressed from the command line, evaluated on the shards it was trained on."
    from llmwork.cli import main
    from llmwork.train import train
    data, _ = token_dirs
    res = train(small_config(data, tmp_path / "run", steps=20, lr=3e-3, checkpoint_every=20))
    assert main(["compress", res["checkpoint"], str(tmp_path / "small.pt"), "--int8", "--prune", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "eval loss" in out and "tokens/s" in out
    back = compress.load_compressed(tmp_path / "small.pt")
    report = torch.load(tmp_path / "small.pt", weights_only=True)["report"]
    tokens = compress._eval_tokens_for(res["checkpoint"])
    assert compress.lm_eval_loss(back, tokens) == pytest.approx(report["compressed"]["eval_loss"], abs=1e-6)
    assert main(["compress", res["checkpoint"], str(tmp_path / "x.pt")]) == 2   # neither --int8 nor --prune
    assert "Nothing to do" in capsys.readouterr().err


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
    back = compress.load_compressed(tmp_path / "out.pt")
    again = compress.load_compressed(tmp_path / "out.pt", like=_tiny_gpt(seed=5))  # another start: the saved weights win
    x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    assert type(back).__name__ == "GPT" and torch.equal(back(x)[0], again(x)[0])
    capsys.readouterr()
    for content, name in ((b"", "empty.pt"), (b"not a checkpoint", "garbage.pt")):
        (tmp_path / name).write_bytes(content)
        assert main(["compress", str(tmp_path / name), str(tmp_path / f"{name}.out"), "--int8"]) == 2
        err = capsys.readouterr().err
        assert f"{name} is not a readable llmwork checkpoint" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="is not a model written by this llmwork's compress"):
        compress.load_compressed(ck)
    leftovers = sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name)
    assert leftovers == []
