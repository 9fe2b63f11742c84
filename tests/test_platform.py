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
