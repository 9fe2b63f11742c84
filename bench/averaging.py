"""DDP vs local SGD vs FedAvg: the same tiny GPT, the same token budget, 2 ranks (Dask workers, gloo).

    python bench/averaging.py [--quick] [--html curves.html]

Peer: DDP (gradients averaged every step). Prints per-strategy wall time, final eval loss on one common held-out
set, the ratio to DDP, and writes the loss curves side by side as an HTML figure.
"""
import argparse, json, tempfile, time
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import torch

from _cluster import shut  # bench/ is on sys.path when a script here runs
from llmwork.backend import get_client
from llmwork.launch import launch
from llmwork.io import sample_corpus_path
from llmwork.models import GPT, ByteTokenizer, gpt_config, pack_tokens
from llmwork.train import FedAvg, LocalSGD, TokenBatches, TrainConfig, load_checkpoint, split_token_shards, train

SHAPE = dict(n_layer=2, n_head=4, n_embd=64, block_size=64)


def common_eval(checkpoint, data):
    model = GPT(gpt_config("gpt-tiny", vocab_size=257, **SHAPE)); model.load_state_dict(load_checkpoint(checkpoint)["model"]); model.eval()
    with torch.no_grad():
        return float(np.mean([model(**b)[1].item() for b in TokenBatches(str(data), 32, SHAPE["block_size"], seed=0, eval_batches=8).eval_iter(0, 1)]))


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--quick", action="store_true"); ap.add_argument("--html", default="averaging.html")
    ap.add_argument("--H", type=int, default=4)
    args = ap.parse_args()
    steps = 80 if args.quick else 300
    docs = pd.read_json(sample_corpus_path(), lines=True, nrows=4000 if args.quick else 20000)[["text"]]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        with dask.config.set(scheduler="threads"):
            pack_tokens(dd.from_pandas(docs, npartitions=8), ByteTokenizer(), d / "all")
        local = split_token_shards(d / "all", d / "local", 2)
        client = get_client("cpu", n_workers=2, threads_per_worker=1, dashboard_address=None)
        client.wait_for_workers(2, timeout=120)
        rows, curves = [], {}
        try:
            for name, strategy, data in [("ddp", "ddp", d / "all"), (f"local_sgd H={args.H}", LocalSGD(args.H), d / "all"), (f"fedavg H={args.H}", FedAvg(args.H), local)]:
                cfg = TrainConfig(data=str(data), out_dir=str(d / name.replace(" ", "_")), model="gpt-tiny", model_overrides=SHAPE, device="cpu",
                                  batch_size=16, steps=steps, lr=3e-3, warmup_steps=steps // 20, eval_every=steps // 10, checkpoint_every=0, threads=1)
                t0 = time.perf_counter()
                res = launch(train, cfg, client, strategy=strategy).result(timeout=3600)
                secs = time.perf_counter() - t0
                curves[name] = res["history"]
                rows.append({"strategy": name, "seconds": round(secs, 1), "final train loss": round(res["loss"], 4),
                             "own eval loss": round(res["eval_loss"], 4), "common eval loss": round(common_eval(res["checkpoint"], d / "all"), 4),
                             "weight syncs": steps if strategy == "ddp" else steps // args.H})
        finally:
            shut(client)
    table = pd.DataFrame(rows)
    ddp = table["common eval loss"].iloc[0]
    table["vs DDP"] = (table["common eval loss"] / ddp).round(4)
    print(f"{steps} steps x 16 sequences x {SHAPE['block_size']} tokens on 2 ranks (same token budget each)")
    print(table.to_string(index=False))
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    fig = make_subplots(rows=1, cols=2, subplot_titles=("train loss", "eval loss (each run's own held-out data)"))
    for name, hist in curves.items():
        fig.add_trace(go.Scatter(x=[m["step"] for m in hist], y=[m["loss"] for m in hist], name=name, legendgroup=name), 1, 1)
        ev = [m for m in hist if "eval_loss" in m]
        fig.add_trace(go.Scatter(x=[m["step"] for m in ev], y=[m["eval_loss"] for m in ev], name=name, legendgroup=name, showlegend=False), 1, 2)
    fig.update_layout(title="DDP vs local SGD vs FedAvg (tiny GPT, 2 CPU ranks)").write_html(args.html, include_plotlyjs=True)
    print(f"curves: {args.html}")


if __name__ == "__main__":
    main()
