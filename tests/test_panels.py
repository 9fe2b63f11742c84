"""The panels driven from Python: set widget values, click, wait, and check state and outputs against the library."""
import json

import pandas as pd
import pytest
import yaml

from llmwork.backend import get_client
from llmwork.panels import (CleanPanel, DaskProgress, SearchPanel, Session, TrainPanel, TrainingRun, Workbench, cached_tokens,
                            embedding_index, plain_error, same_documents)


@pytest.fixture(autouse=True)
def _cpu_engine(monkeypatch):
    "These tests compare with pandas results: the cpu engine on any machine (subprocesses inherit it)."
    monkeypatch.setenv("LLMWORK_BACKEND", "cpu")


TINY = dict(n_layer=1, n_head=2, n_embd=32, block_size=32)


@pytest.fixture(scope="module")
def client():
    c = get_client("cpu", n_workers=1, threads_per_worker=1)
    yield c
    cluster = c.cluster
    c.close(); cluster.close()


@pytest.fixture
def corpus(tmp_path):
    "12 documents: 3 exact copies of earlier ones, one empty text."
    texts = [f"document number {i} about packages and fonts" for i in range(8)]
    texts += [texts[1], texts[1], texts[5], ""]
    frame = pd.DataFrame({"id": [f"d{i:02d}" for i in range(12)], "text": texts})
    path = tmp_path / "corpus.jsonl"
    frame.to_json(path, orient="records", lines=True)
    return path, frame


def test_clean_panel_runs_the_pipeline_it_shows(tmp_path, corpus, client):
    path, frame = corpus
    panel = CleanPanel(Session(str(path), tmp_path / "wb", backend="cpu", client=client),
                       steps=["clean_whitespace", "exact_dedup"], enabled=["clean_whitespace", "exact_dedup"])
    ws = next(s for s in panel.steps if s.name == "clean_whitespace")
    ws.params["max_blank_lines"].value = 3
    assert panel.pipeline_config() == {"steps": [{"step": "clean_whitespace", "max_blank_lines": 3}, {"step": "exact_dedup"}]}
    panel.run_button.click()
    assert panel.run_button.disabled  # the kernel is free; the button waits for the run
    report = panel.wait(120)
    assert panel.run_button.disabled is False
    # the counts against pandas: one empty text fails validation, three copies are exact duplicates
    nonempty = frame[frame["text"] != ""]
    assert (report["n_in"], report["n_kept"]) == (12, nonempty["text"].nunique())
    assert list(panel.funnel.data[0].x) == [12, 11, 11, 8]
    assert list(panel.funnel.data[0].y) == ["input", "validate", "clean_whitespace", "exact_dedup"]
    saved = yaml.safe_load((tmp_path / "wb" / "clean" / "pipeline.yaml").read_text())
    assert saved["steps"][0] == {"step": "clean_whitespace", "max_blank_lines": 3}
    # removed documents by reason: the most frequent reason is shown first, with the duplicates' originals
    assert panel.reason.options[0] == ("exact_duplicate (3)", "exact_duplicate")
    sample = panel.removed_sample("exact_duplicate")
    assert sorted(zip(sample["id"], sample["duplicate_of"])) == [("d08", "d01"), ("d09", "d01"), ("d10", "d05")]
    assert panel.removed.value.count("<tr") == 4 and "d09" in panel.removed.value
    assert panel.session.clean_dir == tmp_path / "wb" / "clean"
    # the run went through the panel's client with the progress tracker attached: real task counts, never backwards
    assert panel.tracker.values == sorted(panel.tracker.values) and panel.tracker.values[-1] == 95
    done, total = panel.progress_label.value.split(" tasks")[0].split(" / ")
    assert done == total and int(total.replace(",", "")) > 4


def test_clean_panel_errors_are_plain_words(tmp_path, corpus, client):
    path, _ = corpus
    panel = CleanPanel(Session(str(path), tmp_path / "wb", backend="cpu", client=client), steps=["exact_dedup"])
    panel.corpus.value = "   "
    panel.run_button.click()
    with pytest.raises(ValueError): panel.wait(60)
    assert "Give a corpus: a file, a folder or a glob" in panel.status.value
    panel.corpus.value = str(path)
    panel.steps[0].enabled.value = False
    panel.run_button.click()
    with pytest.raises(ValueError): panel.wait(60)
    assert "Tick at least one cleaning step." in panel.status.value
    # an earlier run is kept unless replacing is allowed
    panel.steps[0].enabled.value = True
    panel.run_button.click(); panel.wait(120)
    panel.overwrite.value = False
    panel.run_button.click()
    with pytest.raises(FileExistsError): panel.wait(60)
    assert "already exists" in panel.status.value and "Traceback" not in panel.status.value
    assert panel.progress.bar_style == "danger"


def test_clean_panel_refuses_odd_thresholds_beside_the_step(tmp_path, corpus, client):
    path, _ = corpus
    panel = CleanPanel(Session(str(path), tmp_path / "wb", backend="cpu", client=client),
                       steps=["gopher_quality", "exact_dedup"], enabled=["gopher_quality", "exact_dedup"])
    gopher = panel.steps[0]
    gopher.params["max_symbol_word_ratio"].value = 2.0
    assert "max_symbol_word_ratio is 2, but it is a share between 0 and 1" in gopher.error.value  # shown at once
    gopher.params["min_doc_words"].value = -1
    panel.run_button.click()
    with pytest.raises(ValueError): panel.wait(60)
    assert "Not run: gopher_quality: min_doc_words is -1" in panel.status.value
    assert "gopher_quality: max_symbol_word_ratio is 2, but it is a share between 0 and 1" in panel.status.value
    assert "gopher_quality: min_doc_words is -1; it counts or measures something, so enter 0 or more." in panel.status.value
    assert gopher.params["max_symbol_word_ratio"].value == 2.0  # refused, not changed
    assert not (tmp_path / "wb" / "clean").exists()
    gopher.params["max_symbol_word_ratio"].value, gopher.params["min_doc_words"].value = 0.1, 1
    assert gopher.error.value == ""
    gopher.enabled.value = False  # a step left out is not checked
    gopher.params["min_doc_words"].value = -1
    panel.run_button.click(); panel.wait(120)
    assert "llmwork-success" in panel.status.value


def test_dask_progress_moves_through_intermediate_values_and_never_back(client):
    import time as _time
    import dask
    import ipywidgets as widgets
    def slow(x):
        _time.sleep(0.15)
        return x
    def rounds(x):  # a task group of its own: the progress tracker tells stages apart by task group
        _time.sleep(0.15)
        return x
    bar, label = widgets.IntProgress(max=100), widgets.Label()
    # the first stage ends where the second begins, so a poll after its last task cannot leave the bar above 50
    with DaskProgress(client, bar, label, start=5, end=50, interval=0.05) as progress:
        assert sum(dask.compute(*[dask.delayed(slow)(i) for i in range(12)])) == 66
        progress.stage(50, 90, open_ended=True)  # rounds of unknown number: each moves the bar, none reaches 90
        for r in range(3): dask.compute(*[dask.delayed(rounds)(r * 10 + i) for i in range(2)])
        progress.poll()
        in_rounds = bar.value
    assert any(5 < v < 50 for v in progress.values), progress.values
    assert progress.values == sorted(progress.values) and progress.values[-1] == 90
    assert 50 < in_rounds < 90, progress.values


def test_unknown_step_is_refused():
    with pytest.raises(ValueError, match="Unknown cleaning step"):
        CleanPanel(Session(backend="cpu"), steps=["no_such_step"])


def test_unexpected_errors_name_the_exception():
    assert plain_error(RuntimeError("disk on fire")).startswith("Unexpected RuntimeError: disk on fire.")


def test_dask_progress_counts_the_tasks_of_a_run(client):
    import dask.bag as db
    import ipywidgets as widgets
    bar, label = widgets.IntProgress(max=100), widgets.Label()
    with DaskProgress(client, bar, label, start=10, end=90, interval=0.05) as progress:
        assert db.from_sequence(range(40), npartitions=8).map(lambda x: x + 1).sum().compute() == 820
        progress.poll()
    assert bar.value == 90
    done, total = label.value.split(" tasks")[0].split(" / ")
    assert done == total and int(total.replace(",", "")) >= 8


def test_training_run_without_dask_stops_on_request(tmp_path, corpus):
    "Without a client a run trains on a thread with the same metrics and stop hooks."
    import time
    import dask.dataframe as dd
    from llmwork.train import TrainConfig
    _, frame = corpus
    shards = cached_tokens(dd.from_pandas(frame, npartitions=2), tmp_path / "tokens")
    assert shards.n_tokens == sum(len(t.encode()) + 1 for t in frame["text"] if t)  # bytes + one end-of-document
    run = TrainingRun(TrainConfig(data=str(tmp_path / "tokens"), out_dir=str(tmp_path / "run"), model_overrides=TINY,
                                  steps=100_000, batch_size=4, eval_every=0, checkpoint_every=0, warmup_steps=0))
    assert not run.on_dask
    seen = []
    while len(seen) < 3: seen += run.new_metrics(); time.sleep(0.05)
    run.stop()
    result = run.result(60)
    seen += run.new_metrics()
    assert result["stopped"] and run.done
    assert [m["step"] for m in seen] == list(range(1, result["step"] + 1))
    assert result["checkpoint"].endswith(f"step-{result['step']:08d}.pt")


def test_train_panel_reports_bad_settings_and_missing_checkpoints(tmp_path, corpus, client):
    path, _ = corpus
    panel = TrainPanel(Session(str(path), tmp_path / "wb", backend="cpu", client=client), model_overrides=TINY)
    assert panel.workers.value == 1  # filled from the running cluster
    panel.workers.value = 2
    panel.start_button.click()
    with pytest.raises(ValueError): panel.wait(120)
    assert "Workers/GPUs is 2 but the Dask cluster has 1 worker(s)" in panel.status.value
    panel.generate()
    with pytest.raises(ValueError): panel.generator.wait(30)
    assert "No checkpoint yet: Start a training run first." in panel.generated.value
    assert panel.checkpoints.options == () and panel.resume_button.disabled


def test_train_panel_resume_continues_from_the_checkpoint(tmp_path, corpus, client):
    path, _ = corpus
    panel = TrainPanel(Session(str(path), tmp_path / "wb", backend="cpu", client=client), model_overrides=TINY,
                       steps=6, batch_size=4)
    panel.start_button.click()
    first = panel.wait(180)
    assert (first["step"], first["stopped"]) == (6, False)
    assert [o[0] for o in panel.checkpoints.options][-1] == "run-001 · step 6"
    panel.steps.value = 9
    panel.resume_button.click()
    second = panel.wait(180)
    assert (second["start_step"], second["step"]) == (6, 9)
    assert list(panel.curve.data[0].x) == list(range(1, 10))  # one curve across the resume
    metrics = [json.loads(l) for l in (tmp_path / "wb" / "train" / "run-001" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 10))
    assert list(panel.curve.data[0].y) == pytest.approx([m["loss"] for m in metrics])


def test_workbench_shares_one_session(tmp_path, corpus, client):
    path, _ = corpus
    wb = Workbench(str(path), out_dir=tmp_path / "wb", backend="cpu", client=client)
    assert wb.clean.session is wb.cluster.session is wb.train.session
    assert [wb.tabs.get_title(i) for i in range(3)] == ["Clean", "Cluster", "Train"]
    assert "engine cpu" in wb.header.value and "1 Dask workers" in wb.header.value
    wb.session.extra_steps = [{"step": "semantic_dedup", "eps": 0.1}]
    wb.session.changed("steps")
    assert wb.clean.pipeline_config()["steps"][-1] == {"step": "semantic_dedup", "eps": 0.1}
    row = wb.clean.added.children[0]
    assert row.children[1].value == "<b>Added</b> semantic_dedup: eps 0.1"  # in words, not a Python dict
    row.children[2].click()  # Remove
    assert wb.session.extra_steps == [] and wb.clean.added.children == ()
    assert wb.clean.pipeline_config()["steps"][-1] != {"step": "semantic_dedup", "eps": 0.1}


def test_stop_from_the_kernel_event_loop_stops_the_dask_run(tmp_path, corpus, client):
    "In JupyterLab a click handler runs on the kernel's asyncio loop; Stop must still reach the ranks on the workers."
    import asyncio
    import time
    path, _ = corpus
    panel = TrainPanel(Session(str(path), tmp_path / "wb", backend="cpu", client=client), model_overrides=TINY,
                       steps=100_000, batch_size=4)
    panel.start_button.click()
    deadline = time.monotonic() + 180
    while len(panel.curve.data[0].x) < 3 and time.monotonic() < deadline: time.sleep(0.1)
    assert panel.run.on_dask

    async def click(): panel.stop_button.click()
    asyncio.run(click())
    result = panel.wait(120)
    assert result["stopped"] and result["step"] < 100_000
    assert panel.curve.data[0].x[-1] == result["step"]
    assert f"Stopped at step {result['step']:,}" in panel.status.value


def _kept(tmp_path, n=40):
    "A stored dataset like a cleaning run's kept/: four topics, ten documents each."
    topics = ["fonts and typefaces for printing", "python library for parsing json", "kernel driver for network cards",
              "strategy game with ancient armies"]
    frame = pd.DataFrame({"id": [f"k{i:02d}" for i in range(n)],
                          "text": [f"{topics[i % 4]} variant {i} with extra words {i * 7}" for i in range(n)]})
    (tmp_path / "kept").mkdir()
    frame.to_parquet(tmp_path / "kept" / "part.0.parquet", index=False)
    return tmp_path / "kept", frame


def test_search_panel_builds_vectors_on_demand_like_the_embedder_alone(tmp_path, client):
    kept, frame = _kept(tmp_path)
    panel = SearchPanel(Session(str(kept), tmp_path / "wb", backend="cpu", client=client))
    panel.dataset.value = str(kept)
    panel.open_dataset()
    panel.search.kind.value = "like text"  # no clustering to reuse: built on the Dask cluster
    panel.wait(180)
    assert "Built embeddings of 40 documents" in panel.status.value, panel.status.value
    box = panel.search
    # the vectors the Dask run built are the fitted embedder's own, row for row
    reference = box.embedder.transform(frame["text"].tolist())
    rows = box.index.row_of(frame["id"].tolist())
    assert abs(box.index.vectors[rows].numpy() - reference).max() < 1e-5
    box.query.value = frame["text"].iloc[6]
    box.button.click()
    assert box.results["id"].iloc[0] == "k06"
    assert set(box.results["id"].iloc[1:4]) <= set(frame["id"].iloc[2::4])  # then the same topic


def test_search_panel_reuses_the_cluster_tabs_vectors_only_for_the_same_documents(tmp_path, client):
    import dask.dataframe as dd
    from llmwork.viz import Clustering
    kept, frame = _kept(tmp_path)
    index, embedder = embedding_index(dd.from_pandas(frame, npartitions=2))
    vectors = index.vectors[index.row_of(frame["id"].tolist())].numpy()
    clustering = Clustering(frame.assign(cluster=0), vectors, pd.DataFrame(), embedder)
    assert same_documents(clustering, kept)
    assert not same_documents(Clustering(frame.iloc[1:].assign(cluster=0), vectors[1:], pd.DataFrame(), embedder), kept)
    session = Session(str(kept), tmp_path / "wb", backend="cpu", client=client)
    session.clusters = clustering
    panel = SearchPanel(session)
    panel.dataset.value = str(kept)
    panel.open_dataset()
    panel.search.kind.value = "like document id"
    assert not panel.job.busy and "Cluster tab&#x27;s embeddings of these 40 documents" in panel.status.value
    panel.search.query.value = "k05"
    panel.search.button.click()
    assert "k05" not in set(panel.search.results["id"]) and len(panel.search.results) > 0
