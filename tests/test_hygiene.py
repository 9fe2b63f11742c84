"""End to end: the corpus-hygiene steps (pii, decontaminate, line_dedup) from a pipeline config, the `mix` command,
and their GPU conformance listings (checked against cuDF's own code where the gpu extra is installed)."""
import argparse, importlib.util, json

import dask.dataframe as dd
import pandas as pd
import pytest

import llmwork.pii, llmwork.decontaminate, llmwork.line_dedup, llmwork.mix  # register the steps
from llmwork.clean import Pipeline
from llmwork.io import read_corpus, read_sample_corpus


@pytest.fixture(scope="module")
def corpus():
    c = read_sample_corpus().compute().head(600)[["id", "text"]].reset_index(drop=True)
    c.loc[10, "text"] += "\nReach me at jane.doe@example.net or +1 (555) 123-4567 from 8.8.8.8."
    c.loc[20, "text"] += "\n" + "the quick brown fox jumps over the lazy dog while the farmer watches from the old porch"
    return c


def test_pipeline_yaml_runs_the_three_steps_and_counts_reconcile(corpus, tmp_path):
    (tmp_path / "eval.jsonl").write_text(json.dumps({"id": "e1", "question": "The quick brown fox jumps over the lazy dog",
                                                     "answer": "while the farmer watches from the old porch"}) + "\n")
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"steps:\n  - step: pii\n  - step: decontaminate\n    eval_paths: [{tmp_path / 'eval.jsonl'}]\n"
                      "    eval_columns: [question, answer]\n  - step: line_dedup\n    unit: paragraph\n")
    report = Pipeline.from_file(config).run(dd.from_pandas(corpus, npartitions=3), tmp_path / "out")
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["decontaminate"]["reasons"] == {"contaminated": 1}
    removed = read_corpus(str(tmp_path / "out" / "removed")).compute()
    assert removed.loc[removed["reason"] == "contaminated", ["id", "duplicate_of"]].values.tolist() == [[corpus["id"][20], "e1"]]
    kept = read_corpus(str(tmp_path / "out" / "kept")).compute().set_index("id")["text"]
    assert "email@example.com" in kept[corpus["id"][10]] and "<PHONE_NUMBER>" in kept[corpus["id"][10]]
    assert "22.214.171.124" in kept[corpus["id"][10]]
    assert report["n_in"] == report["n_kept"] + sum(s["n_removed"] for s in report["steps"])
    # the saved pipeline.yaml rebuilds the same steps
    again = Pipeline.from_file(tmp_path / "out" / "pipeline.yaml")
    assert [s.name for s in again.steps] == ["pii", "decontaminate", "line_dedup"]


def _cli(argv):
    parser = argparse.ArgumentParser(prog="llmwork")
    llmwork.mix.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mix", *argv])
    return args.func(args)


def test_mix_command_proportions_seed_and_refusal(corpus, tmp_path, capsys):
    corpus.iloc[:400].to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    corpus.iloc[400:].to_parquet(tmp_path / "b.parquet")
    argv = [f"{tmp_path / 'a.jsonl'}=1", f"{tmp_path / 'b.parquet'}=1", str(tmp_path / "m"), "--tokens", "20000", "--seed", "3"]
    assert _cli(argv) == 0
    assert "tokens (whitespace words)" in capsys.readouterr().out
    report = json.loads((tmp_path / "m" / "_mix_report.json").read_text())
    for s in report["sources"].values(): assert abs(s["share"] - 0.5) < 0.02
    first = read_corpus(str(tmp_path / "m")).compute()
    with pytest.raises(FileExistsError, match="already exists"): _cli(argv)
    assert _cli(argv + ["--overwrite"]) == 0
    assert read_corpus(str(tmp_path / "m")).compute().equals(first)  # same seed, same output
    with pytest.raises(ValueError, match="is not SOURCE=WEIGHT"): _cli([str(tmp_path / "a.jsonl"), str(tmp_path / "x"), "--tokens", "5"])


@pytest.mark.skipif(importlib.util.find_spec("pylibcudf") is None, reason="needs the gpu extra (no GPU needed)")
def test_gpu_listings_conform(tmp_path):
    from llmwork.gpu_check import format_findings, gpu_check
    (tmp_path / "eval.jsonl").write_text(json.dumps({"id": "e", "text": "a b c d e f g h i j k l m n"}) + "\n")
    steps = [llmwork.pii.Pii(), llmwork.line_dedup.LineDedup(unit="paragraph"),
             llmwork.decontaminate.Decontaminate(eval_paths=[str(tmp_path / "eval.jsonl")])]
    findings = gpu_check(steps, n_sample=40)
    assert [f for f in findings if f.problem] == [], format_findings(findings)
    assert {f.step for f in findings} >= {"pii", "line_dedup", "decontaminate"}
