"""Compression trade-off: size on disk, CPU speed and quality of int8 (torchao, torch dynamic) and pruning,
for a tiny GPT and a small text classifier trained here on the bundled Debian corpus.

    python bench/compress.py [--quick]

The peer is the original float32 model, measured in the same run on the same eval data: ratios are compressed/original.
"""
import argparse, json, tempfile, time
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import torch

from llmwork.compress import compress
from llmwork.io import sample_corpus_path
from llmwork.models import ByteTokenizer, EncoderConfig, TextClassifier, pack_tokens, pad_batch
from llmwork.train import ExampleBatches, RankContext, TokenBatches, TrainConfig, train

VARIANTS = [("int8 torchao", dict(int8=True, engine="torchao")), ("int8 torch-dynamic", dict(int8=True, engine="torch-dynamic")),
            ("prune 0.3", dict(int8=False, prune=0.3)), ("prune 0.3 + int8 torchao", dict(int8=True, prune=0.3, engine="torchao")),
            ("prune 0.5 + int8 torch-dynamic", dict(int8=True, prune=0.5, engine="torch-dynamic"))]


def gpt(out: Path, steps: int, docs: pd.DataFrame):
    with dask.config.set(scheduler="threads"):
        pack_tokens(dd.from_pandas(docs[["text"]], npartitions=4), ByteTokenizer(), out / "tokens")
    cfg = TrainConfig(data=str(out / "tokens"), out_dir=str(out / "gpt"), model="gpt-tiny", batch_size=16, steps=steps,
                      model_overrides=dict(n_layer=2, n_embd=64, n_head=4, block_size=64),
                      lr=2e-3, warmup_steps=max(1, steps // 20), eval_every=0, checkpoint_every=steps, device="cpu")
    t0 = time.perf_counter(); res = train(cfg, RankContext()); secs = time.perf_counter() - t0
    batches = TokenBatches(str(out / "tokens"), 16, 64, seed=0, eval_batches=4)
    tokens = torch.cat([torch.cat([b["input_ids"], b["labels"][:, -1:]], 1) for b in batches.eval_iter(0, 1)])
    print(f"tiny GPT (2 layers, width 64, context 64, byte tokens): {steps} steps in {secs:.0f} s, train loss {res['loss']:.3f}")
    return res["checkpoint"], dict(eval_tokens=tokens, new_tokens=32)


def classifier(out: Path, steps: int, docs: pd.DataFrame):
    top = docs["section"].value_counts().index[:5]
    d = docs[docs["section"].isin(top)].reset_index(drop=True)
    labels = torch.tensor(pd.Categorical(d["section"], categories=top).codes, dtype=torch.long)
    tok = ByteTokenizer()
    ids, mask = pad_batch(tok.encode_batch(d["text"].tolist()), pad_id=0, max_len=64)
    rng = np.random.default_rng(0); order = rng.permutation(len(d)); ev, tr = order[:500], order[500:]
    tensors = {"input_ids": ids[tr], "attention_mask": mask[tr], "labels": labels[tr]}
    model = TextClassifier(EncoderConfig(vocab_size=tok.vocab_size, n_labels=len(top), max_len=64, n_layer=1, n_head=4, n_embd=64, dropout=0.0))
    cfg = TrainConfig(out_dir=str(out / "clf"), batch_size=32, steps=steps, lr=1e-3, warmup_steps=max(1, steps // 20),
                      eval_every=0, checkpoint_every=steps, device="cpu")
    t0 = time.perf_counter(); res = train(cfg, RankContext(), model=model, data=ExampleBatches(tensors, 32)); secs = time.perf_counter() - t0
    print(f"classifier ({len(top)} Debian sections): {steps} steps in {secs:.0f} s, train loss {res['loss']:.3f}")
    return res["checkpoint"], dict(eval_inputs={"input_ids": ids[ev], "attention_mask": mask[ev]}, eval_labels=labels[ev])


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--quick", action="store_true"); ap.add_argument("--json")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one core for every model: comparable speeds on a shared machine
    docs = pd.read_json(sample_corpus_path(), lines=True, nrows=6000 if args.quick else 30000)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for name, (ck, ev) in [("tiny GPT", gpt(d, 60 if args.quick else 300, docs)), ("classifier", classifier(d, 60 if args.quick else 300, docs))]:
            for label, kw in VARIANTS:
                rep = compress(ck, d / "out.pt", **kw, **ev)
                o, c = rep["original"], rep["compressed"]
                speed = "tokens_per_s" if "tokens_per_s" in o else "docs_per_s"
                quality = "eval_loss" if "eval_loss" in o else "accuracy"
                rows.append({"model": name, "variant": label,
                             "MB": round(rep["size_bytes"]["compressed"] / 1e6, 2), "MB orig": round(rep["size_bytes"]["original"] / 1e6, 2),
                             "zstd MB": round(rep["size_zstd_bytes"]["compressed"] / 1e6, 2), "zstd MB orig": round(rep["size_zstd_bytes"]["original"] / 1e6, 2),
                             "speed": round(c[speed]), "speed orig": round(o[speed]), "speedup": round(c[speed] / o[speed], 2), "unit": speed,
                             quality: round(c[quality], 4), f"{quality} orig": round(o[quality], 4)})
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    print(table.to_string(index=False))
    if args.json: Path(args.json).write_text(table.to_json(orient="records", indent=1))


if __name__ == "__main__":
    main()
