"""`llmwork demo` end to end through the console script, on a slice of the sample corpus."""
import gzip
import json
import subprocess
import sys
from pathlib import Path

import re

import pandas as pd

from llmwork.io import sample_corpus_path

LLMWORK = str(Path(sys.executable).with_name("llmwork"))


def test_demo_runs_every_stage_and_reconciles(tmp_path):
    corpus = tmp_path / "slice.jsonl"
    with gzip.open(sample_corpus_path(), "rt") as src, open(corpus, "w") as dst:
        for i, line in enumerate(src):
            if i == 1500: break
            dst.write(line)
    out = tmp_path / "demo"
    run = subprocess.run([LLMWORK, "demo", "--input", str(corpus), "--out-dir", str(out), "--k", "5",
                          "--train-seconds", "60", "--quiet"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "kept " in run.stdout and "fuzzy_dedup" in run.stdout and "Sample (gpt-tiny" in run.stdout
    report = json.loads((out / "clean" / "report.json").read_text())
    assert report["n_in"] == 1500
    assert report["n_in"] == report["n_kept"] + sum(s["n_removed"] for s in report["steps"])
    kept = pd.read_parquet(out / "clean" / "kept")
    removed = pd.read_parquet(out / "clean" / "removed")
    assert len(kept) == report["n_kept"] and len(removed) == report["n_in"] - report["n_kept"]
    assert set(kept.id).isdisjoint(removed.id) and len(set(kept.id) | set(removed.id)) == 1500
    assert len(pd.read_csv(out / "cluster" / "clusters.csv")) == 5
    clusters = pd.read_parquet(out / "cluster" / "clusters.parquet")
    assert sorted(clusters.id) == sorted(kept.id) and set(clusters.cluster) == set(range(5))
    html = (out / "report" / "report.html").read_text()
    assert "Cleaning funnel" in html and "Cluster map" in html and "Training" in html
    assert json.loads((out / "summary.json").read_text())["documents"] == 1500
    # the model says something: most words of the sample (3+ letters, prompt excluded) are words of the training corpus,
    # counted here from the demo's own output, independently of the demo's count, which it prints
    sample = json.loads((out / "train" / "sample.json").read_text())
    assert run.stdout.count(sample["prompt"] + sample["sample"]) == 1
    vocabulary = {w.lower() for t in kept.text for w in re.findall(r"[^\W\d_]+", t)}
    words = [w.lower() for w in re.findall(r"[^\W\d_]+", sample["sample"]) if len(w) >= 3]
    share = sum(w in vocabulary for w in words) / len(words) if words else 0.0
    # on this 1,500-document slice with 60 s of training (30 s gave 58% once on a loaded machine: the budget is wall
    # time) the model may still mostly emit blank lines; where it says
    # five words or more, most must be real (the full demo's share, 86% when measured, is in the README)
    if len(words) >= 5: assert share >= 0.6, (share, sample["sample"])
    printed = re.search(r"Known words: (\d+)% of the sample's (\d+) words of 3\+ letters occur in the training corpus", run.stdout)
    assert printed and (int(printed[1]), int(printed[2])) == (round(100 * share), len(words)), run.stdout[-2000:]
    # a second run refuses to overwrite without being asked
    again = subprocess.run([LLMWORK, "demo", "--input", str(corpus), "--out-dir", str(out), "--stages", "summary"],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr
