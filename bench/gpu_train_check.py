"""llmwork's torch training path on CUDA, without Dask, cuDF or pandas (what the lent GPU machine has: torch only).

    python bench/gpu_train_check.py train [--device cuda|cpu] [--model gpt-medium-small] [--steps 300]
    python bench/gpu_train_check.py ddp   [--device cuda|cpu] [--steps 60]

train  `llmwork.train.train` on one device: bf16 autocast and `torch.compile` on CUDA (the defaults there), a few
       hundred steps; tokens/s from the median step time after the compile warm-up, and MFU against
       --peak-tflops (default 989.4, the H100/H200 SXM dense bf16 figure). Checks the loss falls.
ddp    the same loop in one process per GPU joined by NCCL (gloo and 2 processes on --device cpu), started with
       torch.multiprocessing, each rank on its own GPU, the model wrapped in DistributedDataParallel even for
       one rank (so NCCL all-reduces run on a one-GPU machine too), plus an explicit NCCL all-reduce check.
       Its loss curve must equal one process training on the whole global batch, within bf16 rounding on CUDA
       (1e-4 in fp32 on the CPU).

Each prints one line `RESULT {json}` (the shell summary reads it) and exits 1 when its check fails.
Tokens come from the bundled Debian descriptions via `llmwork.models.pack_texts` (no Dask).
"""
import argparse
import gzip
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from llmwork.models import GPT, ByteTokenizer, gpt_config, pack_texts  # noqa: E402  (torch + numpy only)
from llmwork.train import DDPStrategy, RankContext, TrainConfig, train  # noqa: E402

SAMPLE = ROOT / "llmwork" / "data" / "debian_descriptions.jsonl.gz"
TINY = {"n_layer": 2, "n_embd": 64, "n_head": 4, "block_size": 32}


def sample_texts(n: int) -> list:
    out = []
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as fh:
        for line in fh:
            out.append(json.loads(line)["text"])
            if len(out) >= n: break
    return out


def token_dir(tmp: Path, n_docs: int) -> str:
    pack_texts(sample_texts(n_docs), ByteTokenizer(), tmp / "tokens", n_shards=4)
    return str(tmp / "tokens")


def result(ok: bool, **fields) -> int:
    print("RESULT " + json.dumps({"ok": ok, **fields}), flush=True)
    return 0 if ok else 1


def cmd_train(args) -> int:
    cuda = args.device == "cuda"
    tmp = Path(tempfile.mkdtemp(prefix="llmwork-gpu-train-"))
    overrides = {} if cuda else TINY
    cfg = TrainConfig(data=token_dir(tmp, 20_000 if cuda else 1_000), out_dir=str(tmp / "run"), model=args.model if cuda else "gpt-tiny",
                      model_overrides=overrides, batch_size=args.batch_size or (32 if cuda else 8),
                      steps=args.steps or (300 if cuda else 20), lr=1e-3, warmup_steps=20 if cuda else 2, eval_every=0,
                      checkpoint_every=0, device=args.device, threads=None if cuda else 1)
    t0 = time.perf_counter()
    res = train(cfg)
    wall = time.perf_counter() - t0
    hist = res["history"]
    warm = min(len(hist) - 1, max(3, len(hist) // 10))  # the first steps include torch.compile
    step_s = statistics.median(m["step_time_s"] for m in hist[warm:])
    model = GPT(gpt_config(cfg.model, vocab_size=ByteTokenizer().vocab_size, **overrides))
    block = model.config.block_size
    tps = cfg.batch_size * block / step_s
    mfu = model.flops_per_token(block) * tps / (args.peak_tflops * 1e12) if cuda else None
    losses = [m["loss"] for m in hist]
    ok = statistics.mean(losses[-5:]) < losses[0] - 0.5
    how = "bf16 autocast + torch.compile" if cuda else "fp32 eager (CPU dry run)"
    note = (f"{cfg.model} {model.num_params() / 1e6:.1f}M params, {how}, {len(hist)} steps, "
            f"loss {losses[0]:.2f}->{losses[-1]:.2f}, first step (compile) {hist[0]['step_time_s']:.1f}s")
    return result(ok, tokens_per_s=round(tps), mfu=None if mfu is None else round(mfu, 4), wall_s=round(wall, 1),
                  note=note + ("" if ok else "; LOSS DID NOT FALL"))


class AlwaysDDP(DDPStrategy):
    "DDP even for one rank, so that a one-GPU machine still runs NCCL all-reduces in backward."
    name = "ddp-always"

    def wrap(self, model, ctx):
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(model, device_ids=[torch.device(ctx.device).index] if ctx.device.startswith("cuda") else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_rank(rank: int, world: int, port: int, cfg: dict, out: str):
    import torch.distributed as dist
    cuda = cfg["device"] == "cuda"
    device = f"cuda:{rank}" if cuda else "cpu"  # one distinct GPU per rank
    if cuda: torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        t = torch.tensor([float(rank + 1)], device=device)
        dist.all_reduce(t)
        ok_reduce = float(t) == world * (world + 1) / 2
        res = train(TrainConfig(**cfg), RankContext(rank=rank, world_size=world, device=device, strategy=AlwaysDDP()))
        if rank == 0:
            Path(out).write_text(json.dumps({"losses": [m["loss"] for m in res["history"]], "all_reduce_ok": ok_reduce,
                                             "gpus": [torch.cuda.get_device_name(i) for i in range(world)] if cuda else []}))
    finally:
        dist.destroy_process_group()


def cmd_ddp(args) -> int:
    import torch.multiprocessing as mp
    cuda = args.device == "cuda"
    world = torch.cuda.device_count() if cuda else 2
    tmp = Path(tempfile.mkdtemp(prefix="llmwork-gpu-ddp-"))
    per_rank = 16 if cuda else 4
    cfg = TrainConfig(data=token_dir(tmp, 5_000 if cuda else 1_000), out_dir=str(tmp / "ddp"), model="gpt-mini" if cuda else "gpt-tiny",
                      model_overrides={} if cuda else TINY, batch_size=per_rank * world, steps=args.steps or (60 if cuda else 12),
                      lr=1e-3, warmup_steps=5, eval_every=0, checkpoint_every=0, device=args.device, threads=None if cuda else 1)
    out = tmp / "rank0.json"
    t0 = time.perf_counter()
    mp.spawn(_ddp_rank, args=(world, _free_port(), cfg.to_dict(), str(out)), nprocs=world, join=True)
    wall = time.perf_counter() - t0
    got = json.loads(out.read_text())
    single = [m["loss"] for m in train(TrainConfig(**{**cfg.to_dict(), "out_dir": str(tmp / "one")}))["history"]]
    tol = 0.05 * max(single) if cuda else 1e-4 * max(single)
    worst = max(abs(a - b) for a, b in zip(got["losses"], single))
    ok = got["all_reduce_ok"] and len(got["losses"]) == len(single) and worst <= tol
    backend = "nccl" if cuda else "gloo"
    note = (f"{world} rank(s) x {per_rank} seqs, {backend}, all_reduce {'ok' if got['all_reduce_ok'] else 'WRONG'}, "
            f"max |loss - single process| {worst:.2e} (tolerance {tol:.1e}) over {len(single)} steps")
    return result(ok, world=world, wall_s=round(wall, 1), note=note)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("check", choices=["train", "ddp"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default="gpt-medium-small")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--peak-tflops", type=float, default=989.4)
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        return result(False, note="no CUDA device")
    return cmd_train(args) if args.check == "train" else cmd_ddp(args)


if __name__ == "__main__":
    sys.exit(main())
