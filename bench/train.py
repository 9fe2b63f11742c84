"""Training throughput: llmwork's loop (in-process and launched on Dask) against a plain PyTorch loop, same model, same run.

    python bench/train.py [--quick] [--device cpu|cuda] [--sizes gpt-tiny gpt-mini] [--steps N]

For each GPT size it measures tokens/s and model FLOPs utilization (MFU) of
  plain   a bare single-process PyTorch loop (AdamW, clipping, same batches) -- the peer
  train   llmwork.train.train in this process
  launch1 llmwork.launch.launch on a 1-worker Dask cluster (DDP wrapper off, Dask + metrics streaming on)
  launch2 llmwork.launch.launch on 2 workers, gloo DDP (CPU only; on one GPU box use one worker per GPU)
Every mode uses the same glibc malloc thresholds (those launched ranks set; see llmwork.launch.relax_malloc_trimming;
--default-malloc leaves this process alone). Every CPU process/rank uses --threads torch threads (default 1), so plain/train/launch1 use the same compute and
launch2 uses twice as much (two ranks): its ratio shows data-parallel scaling, the others show overhead.
and prints each one's ratio to `plain`. Step times are medians over the steps after `--warmup`, so start-up
(process spawn, imports, rendezvous) is reported separately as `startup_s` and does not dilute tokens/s.

FLOPs per token = 6N + 12 * layers * width * context (N = non-embedding-position parameters; PaLM appendix B).
MFU = FLOPs per token * tokens/s / peak. Peak on CPU is *measured in the same run* (best of float32 matmuls using
all threads), so CPU MFU is relative to what this machine's BLAS achieves, not a vendor figure. On CUDA the peak
is the H100 SXM dense bf16 figure, 989.4 TFLOPS (pass --peak-tflops for other GPUs).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llmwork.models import GPT, ByteTokenizer, gpt_config, pack_tokens  # noqa: E402
from llmwork.train import TokenBatches, TrainConfig, train, make_optimizer, make_scheduler  # noqa: E402

H100_BF16_TFLOPS = 989.4


def measured_cpu_peak(seconds: float = 3.0, n: int = 2048) -> float:
    "Best float32 matmul FLOP/s over a few seconds with the current thread count."
    a, b = torch.randn(n, n), torch.randn(n, n)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        for _ in range(4): a @ b
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t))
    return best


def plain_loop(model_name, overrides, data_dir, batch_size, steps, warmup, device, precision):
    "The peer: the same GPT, optimizer and batches, no llmwork loop, no checkpoints, no metrics."
    torch.manual_seed(0)
    from llmwork.models import TokenShards
    shards = TokenShards(data_dir)
    model = GPT(gpt_config(model_name, vocab_size=shards.tokenizer().vocab_size, **overrides)).to(device)
    cfg = TrainConfig(batch_size=batch_size, steps=steps, lr=1e-3, warmup_steps=2)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg)
    net = torch.compile(model) if device == "cuda" else model
    batches = TokenBatches(shards, batch_size, model.config.block_size, 0)
    times = []
    for step in range(steps):
        if device == "cuda": torch.cuda.synchronize()
        t = time.perf_counter()
        b = {k: v.to(device) for k, v in batches.batch(step).items()}  # llmwork's step time includes the batch too
        with (torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)):
            loss = net(**b)[1]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
        float(loss.detach())  # llmwork reports the loss every step too
        if device == "cuda": torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return model, statistics.median(times[warmup:])


def step_time_from_history(history, warmup):
    return statistics.median([m["step_time_s"] for m in history[warmup:]])


def run_launch(cfg, n_workers, warmup):
    from llmwork.backend import get_client
    from llmwork.launch import launch
    t0 = time.perf_counter()
    client = get_client("cpu" if cfg.device == "cpu" else "gpu", n_workers=n_workers, dashboard_address=None)
    try:
        client.wait_for_workers(n_workers, timeout=120)
        run = launch(train, cfg, client)
        res = run.result(timeout=3600)
        return step_time_from_history(res["history"], warmup), time.perf_counter() - t0, len(run.metrics)
    finally:
        cluster = client.cluster
        try:
            client.close(); cluster.close(timeout=60)
        except Exception as e:  # a slow shutdown on a loaded machine must not lose the measurement
            print(f"  (cluster shutdown: {type(e).__name__})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="gpt-tiny only, few steps")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", nargs="+", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process/rank on CPU (default 1: on a shared "
                   "machine more threads than free cores makes every mode slower and noisier)")
    p.add_argument("--default-malloc", action="store_true", help="leave glibc's malloc thresholds alone in this "
                   "process (by default they are set as launched ranks set them, so every mode allocates the same way)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    dev = args.device
    if dev == "cpu": torch.set_num_threads(args.threads)
    if not args.default_malloc:
        from llmwork.launch import relax_malloc_trimming
        relax_malloc_trimming()
    if dev == "cpu":
        sizes = args.sizes or (["gpt-tiny"] if args.quick else ["gpt-tiny", "gpt-mini"])
        overrides = {"gpt-tiny": {}, "gpt-mini": {"block_size": 128}, "gpt-medium-small": {"block_size": 128}}
        batch = args.batch_size or 8
        steps = args.steps or (8 if args.quick else 15)
    else:
        sizes = args.sizes or ["gpt-small"]
        overrides = {"gpt-small": {"vocab_size": 50304}}
        batch = args.batch_size or 16
        steps = args.steps or (20 if args.quick else 50)
    precision = "bf16" if dev == "cuda" else "fp32"

    tmp = Path(tempfile.mkdtemp(prefix="llmwork-bench-train-"))
    texts = pd.read_json(Path(__file__).resolve().parents[1] / "llmwork/data/debian_descriptions.jsonl.gz", lines=True, nrows=5000)
    import dask, dask.dataframe as dd
    with dask.config.set(scheduler="threads"):
        pack_tokens(dd.from_pandas(texts[["id", "text"]], npartitions=2), ByteTokenizer(), tmp / "tokens")
    if dev == "cpu":
        peak = measured_cpu_peak()
        peak_note = f"measured fp32 matmul peak with {torch.get_num_threads()} threads: {peak / 1e9:.1f} GFLOP/s"
    else:
        peak = (args.peak_tflops or H100_BF16_TFLOPS) * 1e12
        peak_note = f"GPU dense bf16 peak {peak / 1e12:.1f} TFLOP/s ({torch.cuda.get_device_name(0)})"
    print(f"device {dev}; {os.cpu_count()} CPU cores; torch {torch.__version__}; {peak_note}")
    print(f"batch {batch} sequences, {steps} steps, median step time after {args.warmup} warmup steps\n")

    rows = []
    for name in sizes:
        ov = overrides.get(name, {})
        model, t_plain = plain_loop(name, ov, tmp / "tokens", batch, steps, args.warmup, dev, precision)
        block = model.config.block_size
        fpt = model.flops_per_token(block)
        tokens = batch * block
        cfg = TrainConfig(data=str(tmp / "tokens"), out_dir=str(tmp / f"run-{name}"), model=name, model_overrides=ov,
                          batch_size=batch, steps=steps, lr=1e-3, warmup_steps=2, eval_every=0, checkpoint_every=0,
                          device=dev, precision=precision, threads=args.threads if dev == "cpu" else None)
        res = train(cfg)
        results = {"plain": (t_plain, None), "train": (step_time_from_history(res["history"], args.warmup), None)}
        cfg_l = replace(cfg, out_dir=str(tmp / f"launch-{name}"))
        results["launch1"] = run_launch(replace(cfg_l, out_dir=cfg_l.out_dir + "-1"), 1, args.warmup)[:2]
        if dev == "cpu":
            results["launch2"] = run_launch(replace(cfg_l, out_dir=cfg_l.out_dir + "-2"), 2, args.warmup)[:2]
        print(f"{name}: {model.num_params() / 1e6:.2f}M params, context {block}, {fpt / 1e6:.1f} MFLOP/token")
        for mode, (t, startup) in results.items():
            tps = tokens / t
            mfu = fpt * tps / peak
            ratio = t_plain / t
            extra = f", startup+total {startup:.1f}s" if startup else ""
            print(f"  {mode:8s} {tps:>10,.0f} tokens/s  MFU {100 * mfu:5.1f}%  x{ratio:.2f} of plain{extra}")
            rows.append({"model": name, "mode": mode, "params": model.num_params(), "context": block,
                         "tokens_per_s": tps, "mfu": mfu, "ratio_to_plain": ratio, "wall_s": startup})
    if dev == "cpu":
        again = measured_cpu_peak()
        print(f"\nmatmul peak measured again at the end: {again / 1e9:.1f} GFLOP/s (start: {peak / 1e9:.1f}); "
              "on a shared machine MFU above uses the start figure and is only indicative")
    if args.json: Path(args.json).write_text(json.dumps({"device": dev, "peak": peak, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
