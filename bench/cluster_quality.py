"""Cluster quality of model embeddings against hashed TF-IDF, and the share semantic dedup removes per eps.

    python bench/cluster_quality.py [--set bbc|debian] [--seeds 3] [--limit 0]

On BBC News (2,225 articles, 5 classes; `llmwork datasets fetch bbc_news`), or with `--set debian` on 2,000 bundled
Debian descriptions (250 from each of 8 topical sections: games, sound, graphics, fonts, mail, math, science, web),
in one run and on the same texts:
  1. embeds every article with hashed TF-IDF (128 dimensions, fitted on the articles) and with all-MiniLM-L6-v2
     (`llmwork.embed.ModelEmbedder("minilm")`, CPU, first 256 word pieces), timing each;
  2. clusters each set of vectors with llmwork's spherical k-means (k = the number of classes, one run per seed) and prints the
     adjusted Rand index and normalized mutual information (scikit-learn) of the clusters against the classes,
     mean and range over the seeds, and the MiniLM / hashed ratio;
  3. scores every article as NeMo's SemDeDup does (k = 20 clusters, highest cosine to an earlier article of its
     cluster) and prints the share removed per eps, and how many of the 98 exact duplicate texts each eps finds.
"""
import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from llmwork.cluster import KMeans, earlier_max_similarity
import llmwork
from llmwork.datasets import load_bbc_news
from llmwork.embed import HashedTfidfEmbedder, ModelEmbedder

SECTIONS = ("games", "sound", "graphics", "fonts", "mail", "math", "science", "web")
EPS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def embed(name, texts):
    started = time.perf_counter()
    embedder = HashedTfidfEmbedder(dim=128, seed=0).fit(texts) if name == "hashed_tfidf" else ModelEmbedder("minilm", device="cpu")
    vectors = embedder.transform(texts)
    return vectors, time.perf_counter() - started


def agreement(vectors, labels, seeds):
    scores = []
    for seed in range(seeds):
        found = KMeans(len(set(labels)), spherical=True, seed=seed, n_init=1).fit(vectors).labels_
        scores.append((adjusted_rand_score(labels, found), normalized_mutual_info_score(labels, found)))
    return np.array(scores)


def nemo_scores(vectors, ids, k=20, seed=0):
    "Each document's highest cosine to a document before it (by id) in its k-means cluster."
    labels = KMeans(k, spherical=True, seed=seed, n_init=1).fit(vectors).labels_
    scores = np.full(len(vectors), -1.0)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rows = rows[np.argsort(ids[rows], kind="stable")]
        scores[rows] = earlier_max_similarity(torch.from_numpy(vectors[rows]))[0].numpy()
    return scores


def load_debian_sections(per_section=250):
    "250 descriptions from each of 8 topical Debian sections of the bundled sample corpus, labelled by section."
    docs = pd.read_json(Path(llmwork.__file__).parent / "data" / "debian_descriptions.jsonl.gz", lines=True)
    docs = docs[docs.section.isin(SECTIONS)].groupby("section", group_keys=False).sample(n=per_section, random_state=0)
    return docs.rename(columns={"section": "label"})[["id", "text", "label"]].reset_index(drop=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=["bbc", "debian"], default="bbc", help="the labelled set (default bbc)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N articles (0: all)")
    args = ap.parse_args()
    docs = load_bbc_news() if args.set == "bbc" else load_debian_sections()
    if args.limit: docs = docs.sample(n=args.limit, random_state=0)
    texts, labels = docs.text.tolist(), docs.label.to_numpy()
    ids = docs.id.astype(str).to_numpy()
    exact = docs.text.duplicated(keep="first").to_numpy()  # the later copies of exact duplicate texts
    print(f"{'BBC News' if args.set == 'bbc' else 'Debian sections'}: {len(docs)} documents, {len(set(labels))} classes, {exact.sum()} exact duplicate copies; "
          f"torch threads {torch.get_num_threads()}")
    results = {}
    for name in ("hashed_tfidf", "minilm"):
        vectors, seconds = embed(name, texts)
        s = agreement(vectors, labels, args.seeds)
        results[name] = s[:, 0].mean()
        print(f"{name:>12}: embedded in {seconds:6.1f} s ({vectors.shape[1]} dims); k-means k={len(set(labels))} over {args.seeds} seeds: "
              f"ARI {s[:, 0].mean():.3f} ({s[:, 0].min():.3f}-{s[:, 0].max():.3f}), NMI {s[:, 1].mean():.3f}")
        scores = nemo_scores(vectors, ids)
        line = ", ".join(f"{e:g}: {np.mean(scores >= 1 - e):.1%} ({(exact & (scores >= 1 - e)).sum()}/{exact.sum()} exact)" for e in EPS)
        print(f"{'':>12}  removed per eps (NeMo's rule, k=20): {line}")
    print(f"ARI ratio minilm / hashed_tfidf: {results['minilm'] / results['hashed_tfidf']:.2f}")


if __name__ == "__main__":
    main()
