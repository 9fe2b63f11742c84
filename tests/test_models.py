"Tokenizers, token shards, GPT and encoders: exact values, cross-checks against direct encoding, bad input."
import math
import pickle

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import torch

from llmwork.models import (GPT, GPT_PRESETS, BPETokenizer, ByteTokenizer, EncoderConfig, GPTConfig, KVCache, TextClassifier,
                            TokenClassifier, TokenShards, build_model, gpt_config, load_tokenizer, model_kind,
                            pack_tokens, pad_batch, token_dtype, tokenizer_from_json, train_bpe_tokenizer)

SAMPLE = "llmwork/data/debian_descriptions.jsonl.gz"


@pytest.fixture(scope="module")
def texts():
    return pd.read_json(SAMPLE, lines=True, nrows=400)[["id", "text"]]


def test_byte_tokenizer_round_trips_any_unicode():
    tok = ByteTokenizer()
    for s in ["", "plain ascii", "naïve café — ünïcödé", "emoji 🚀 and CJK 漢字", "tab\tnew\nline"]:
        assert tok.decode(tok.encode(s)) == s
        assert len(tok.encode(s)) == len(s.encode("utf-8"))
    assert tok.decode([104, tok.eos_id, 105]) == "hi"
    assert type(tokenizer_from_json(tok.to_json())) is ByteTokenizer


def test_bpe_learns_merges_and_round_trips(texts, tmp_path):
    tok = train_bpe_tokenizer(texts.text, vocab_size=600, path=tmp_path / "tok.json")
    assert tok.vocab_size == 600
    again = load_tokenizer(tmp_path / "tok.json")
    for s in texts.text.head(20):
        ids = tok.encode(s)
        assert tok.decode(ids) == s
        assert again.encode(s) == ids
    n_bytes = sum(len(s.encode()) for s in texts.text)
    n_tokens = sum(len(tok.encode(s)) for s in texts.text)
    assert n_tokens < 0.6 * n_bytes  # merges compress the text
    assert tok.decode(tok.encode("unseen wörd ✓")) == "unseen wörd ✓"  # byte-level: nothing is out of vocabulary


def test_bpe_rejects_tiny_vocab(texts):
    with pytest.raises(ValueError, match="too small"):
        train_bpe_tokenizer(texts.text, vocab_size=200)


def test_pack_tokens_matches_direct_encoding(texts, tmp_path):
    tok = ByteTokenizer()
    ddf = dd.from_pandas(texts, npartitions=3)
    with dask.config.set(scheduler="sync"):
        shards = pack_tokens(ddf, tok, tmp_path / "tokens")
    expected = []
    for part in range(3):
        ids = []
        for t in ddf.partitions[part].compute().text:
            ids += tok.encode(t) + [tok.eos_id]
        expected.append(ids)
    assert len(shards) == 3
    for i in range(3):
        assert shards.window(i, 0, 10**9).tolist() == expected[i]
    assert shards.n_tokens == sum(map(len, expected))
    assert shards.index["n_docs"] == 400 and shards.dtype == np.uint16
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    again = pickle.loads(pickle.dumps(shards))  # memory maps reopen in another process
    assert again.window(2, 5, 7).tolist() == expected[2][5:12]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        pack_tokens(ddf, tok, tmp_path / "tokens")
    with pytest.raises(ValueError, match="no 'body' column"):
        pack_tokens(ddf, tok, tmp_path / "other", text_col="body")


class _WideTokenizer(ByteTokenizer):
    "A stand-in with a vocabulary too large for uint16."
    vocab_size = 70_000
    eos_id = 69_999


def test_pack_tokens_uses_uint32_for_large_vocabularies(tmp_path):
    ddf = dd.from_pandas(pd.DataFrame({"id": ["a"], "text": ["xy"]}), npartitions=1)
    with dask.config.set(scheduler="sync"):
        shards = pack_tokens(ddf, _WideTokenizer(), tmp_path / "t")
    assert shards.dtype == np.uint32 and token_dtype(65536) == np.uint16
    assert shards.window(0, 0, 3).tolist() == [120, 121, 69_999]


def test_token_shards_missing_index(tmp_path):
    with pytest.raises(FileNotFoundError, match="pack_tokens"):
        TokenShards(tmp_path)


def test_preset_sizes():
    with torch.device("meta"):
        n = {k: GPT(gpt_config(k)).num_params(non_embedding=False) for k in GPT_PRESETS}
    assert n["gpt-tiny"] == 842_624
    assert n["gpt-small"] == 124_475_904  # GPT-2 small with a 50304-token vocabulary
    with pytest.raises(ValueError, match="Unknown model"):
        gpt_config("gpt-xl")


def test_gpt_forward_loss_matches_manual_cross_entropy():
    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=16))
    x, y = torch.randint(0, 257, (3, 16)), torch.randint(0, 257, (3, 16))
    logits, loss = m(x, labels=y)
    manual = -torch.log_softmax(logits, -1).gather(-1, y[..., None]).mean()
    torch.testing.assert_close(loss, manual)
    assert m.flops_per_token() == 6 * m.num_params() + 12 * 1 * 32 * 16
    with pytest.raises(ValueError, match="longer than the model's context"):
        m(torch.zeros((1, 17), dtype=torch.long))


def test_gpt_is_causal_and_generation_is_greedy_and_stops_at_eos():
    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layer=2, n_embd=32, n_head=2, block_size=16)).eval()
    x = torch.randint(0, 256, (1, 12))
    y = x.clone(); y[0, 8:] = 7
    torch.testing.assert_close(m(x)[0][:, :8], m(y)[0][:, :8])
    out = m.generate(x[:, :4], max_new_tokens=30, temperature=0)  # longer than the context: it slides
    assert out.shape == (1, 34)
    step = x[:, :4]
    for _ in range(3):  # greedy = argmax of the last position, one token at a time
        step = torch.cat([step, m(step)[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert out[0, :7].tolist() == step[0].tolist()
    first = int(out[0, 4])
    stopped = m.generate(x[:, :4], max_new_tokens=30, temperature=0, eos_id=first)
    assert stopped.shape == (1, 5)


def test_kv_cache_gives_the_logits_and_greedy_tokens_of_full_recomputation():
    torch.manual_seed(1)
    m = GPT(GPTConfig(n_layer=3, n_embd=48, n_head=4, block_size=24)).eval()
    x = torch.randint(0, 257, (3, 24))
    cache, parts = KVCache(3), []
    for a, b in [(0, 5), (5, 6), (6, 7), (7, 24)]:  # a prompt, single tokens, then a block of several
        parts.append(m(x[:, a:b], cache=cache)[0])
    torch.testing.assert_close(torch.cat(parts, 1), m(x)[0], atol=1e-5, rtol=1e-5)
    for n_prompt, n_new in [(1, 10), (4, 20), (10, 40)]:  # inside the context, up to it, and sliding past it
        prompt = x[:, :n_prompt]
        with_cache = m.generate(prompt, max_new_tokens=n_new, temperature=0)
        reference = prompt
        for _ in range(n_new):  # the uncached path by hand: the whole window through the model every step
            reference = torch.cat([reference, m(reference[:, -24:])[0][:, -1].argmax(-1, keepdim=True)], 1)
        assert with_cache.tolist() == reference.tolist()
        assert m.generate(prompt, max_new_tokens=n_new, temperature=0, use_cache=False).tolist() == reference.tolist()


def test_classifiers_ignore_padding():
    torch.manual_seed(0)
    cfg = EncoderConfig(n_labels=3, n_layer=2, n_embd=32, n_head=2, dropout=0.0)
    ids, mask = pad_batch([[1, 2, 3, 4], [5, 6]], pad_id=9)
    for cls in (TextClassifier, TokenClassifier):
        m = cls(cfg).eval()
        batch = m(ids, mask)[0]
        alone = m(torch.tensor([[5, 6]]))[0]
        torch.testing.assert_close(batch[1, :2] if cls is TokenClassifier else batch[1], alone[0], rtol=1e-5, atol=1e-5)
    labels, _ = pad_batch([[0, 1, 2, 0], [1, 1]], pad_label=-100)
    _, loss = TokenClassifier(cfg)(ids, mask, labels=labels)
    assert torch.isfinite(loss)


def test_model_registry():
    m = build_model("token_classifier", EncoderConfig(n_labels=4).to_dict())
    assert model_kind(m) == "token_classifier"
    with pytest.raises(ValueError, match="Unknown model kind"):
        build_model("rnn", {})
    with pytest.raises(ValueError, match="not a registered model kind"):
        model_kind(torch.nn.Linear(2, 2))
