"""No code runs from a data file: planted payloads in checkpoints, joblib files and tune configs must execute nothing."""
import pathlib
import pickle

import numpy as np
import pytest
import torch
import yaml

from llmwork import classify as C
from llmwork import compress, tune
from llmwork.cli import main


class Payload:
    "Unpickling this creates `target`: the file appearing means code ran."
    def __init__(self, target): self.target = str(target)
    def __reduce__(self): return (pathlib.Path(self.target).touch, ())


def _one_sentence(msg: str):
    msg = msg.strip()
    assert "\n" not in msg and "Traceback" not in msg, msg
    assert msg.endswith("."), msg


def _evil_torch(path, target, wrap=lambda p: p):
    torch.save(wrap(Payload(target)), path)  # torch.save pickles the object: weights_only=False would run it


def test_compress_refuses_a_pickled_payload(tmp_path, capsys):
    target = tmp_path / "PWNED"
    _evil_torch(tmp_path / "evil.pt", target)
    with pytest.raises(ValueError, match="refused") as e:
        compress.load_checkpoint_model(tmp_path / "evil.pt")
    _one_sentence(str(e.value))
    assert main(["compress", str(tmp_path / "evil.pt"), str(tmp_path / "out.pt"), "--int8"]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "evil.pt" in err
    assert not target.exists() and not (tmp_path / "out.pt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["evil.pt"]  # no temporary file left either


def test_load_compressed_refuses_a_pickled_payload(tmp_path):
    target = tmp_path / "PWNED"
    _evil_torch(tmp_path / "evil.pt", target, lambda p: {"format": compress.COMPRESSED_FORMAT, "state_dict": p})
    with pytest.raises(ValueError, match="refused") as e:
        compress.load_compressed(tmp_path / "evil.pt")
    _one_sentence(str(e.value))
    assert not target.exists()


def test_transformer_classifier_and_tagger_refuse_payloads(tmp_path):
    target = tmp_path / "PWNED"
    (tmp_path / "clf").mkdir()
    _evil_torch(tmp_path / "clf" / "model.pt", target, lambda p: {"kind": "text_classifier", "model": p})
    (tmp_path / "clf" / "labels.json").write_text('{"labels": ["a", "b"], "max_len": 8}')
    with pytest.raises(ValueError, match="refused") as e:
        C.TransformerClassifier.load(tmp_path / "clf")
    _one_sentence(str(e.value))
    with pytest.raises(ValueError, match="refused"):  # the quality step reads a directory as a TransformerClassifier
        C.load_quality_model(tmp_path / "clf")
    (tmp_path / "ner").mkdir()
    _evil_torch(tmp_path / "ner" / "tagger.pt", target)
    with pytest.raises(ValueError, match="refused") as e:
        C.NerTagger.load(tmp_path / "ner")
    _one_sentence(str(e.value))
    assert not target.exists()


def test_quality_model_refuses_joblib_and_pickle(tmp_path):
    import joblib
    target = tmp_path / "PWNED"
    joblib.dump({"pipeline": Payload(target), "positive": "keep"}, tmp_path / "evil.joblib")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Payload(target)))
    for name in ("evil.joblib", "evil.pkl"):
        with pytest.raises(ValueError, match="refused because loading them can run code") as e:
            C.load_quality_model(tmp_path / name)
        _one_sentence(str(e.value))
    assert not target.exists()


def test_quality_step_in_clean_refuses_joblib(tmp_path, capsys):
    import joblib
    target = tmp_path / "PWNED"
    joblib.dump(Payload(target), tmp_path / "evil.joblib")
    (tmp_path / "corpus.jsonl").write_text('{"id": "a", "text": "one two three four five"}\n')
    config = {"steps": [{"step": "quality_classifier", "model": str(tmp_path / "evil.joblib"), "threshold": 0.5}]}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config))
    rc = main(["clean", str(tmp_path / "corpus.jsonl"), str(tmp_path / "out"), "--config", str(tmp_path / "pipeline.yaml"), "--quiet"])
    assert rc != 0 and not target.exists()


def test_quality_model_round_trip_is_exact(tmp_path):
    texts = ["good match today team", "bad weather rain", "team wins cup", "rain storm wind", "goal scored team", "wind cold rain"] * 3
    labels = ["keep", "remove"] * 9
    model = C.QualityModel().fit(texts, labels)
    path = model.save(tmp_path / "quality.npz")
    back = C.QualityModel.load(path)
    np.testing.assert_array_equal(back.positive_proba(texts + ["team goal"]), model.positive_proba(texts + ["team goal"]))
    assert [p.name for p in tmp_path.iterdir()] == ["quality.npz"]
    with np.load(path, allow_pickle=False) as z: assert set(z.files) == {"meta", "idf", "coef", "intercept"}


def test_tune_config_cannot_import_a_module_without_allow_import(tmp_path, capsys, monkeypatch):
    target = tmp_path / "PWNED"
    (tmp_path / "evilmod.py").write_text(f"import pathlib\npathlib.Path({str(target)!r}).touch()\ndef train(p, r): return 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = {"train": "evilmod:train", "n_trials": 1, "storage": str(tmp_path / "s.journal"), "space": {"x": {"low": 0, "high": 1}}}
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["tune", str(tmp_path / "tune.yaml")]) == 2
    err = capsys.readouterr().err
    assert "not a registered training function" in err and "--allow-import" in err
    assert not target.exists()
    with pytest.raises(ValueError, match="--allow-import"):
        tune._import_function("os:system")
    assert tune._import_function("llmwork.tune:gpt_trial") is tune.gpt_trial
    assert tune._import_function("evilmod:train", allow_import=True)(None, None) == 0.0 and target.exists()


def test_tune_help_names_allow_import(capsys):
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    assert "--allow-import" in capsys.readouterr().out


def test_search_inverted_file_refuses_a_pickle(tmp_path):
    from llmwork.search import SearchError, VectorIndex
    target = tmp_path / "PWNED"
    (tmp_path / "evil.npz").write_bytes(pickle.dumps(Payload(target)))
    index = VectorIndex(np.array(["a", "b"], dtype=object), np.eye(2, dtype=np.float32), device="cpu")
    with pytest.raises(SearchError, match="is not an inverted file written by save_ivf") as e:
        index.load_ivf(tmp_path / "evil.npz")
    _one_sentence(str(e.value))
    assert not target.exists()
    index.build_ivf(n_lists=1, seed=0)
    index.save_ivf(tmp_path / "good.npz")
    assert VectorIndex(index.ids, np.eye(2, dtype=np.float32), device="cpu").load_ivf(tmp_path / "good.npz").ivf.n_lists == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.npz", "good.npz"]
