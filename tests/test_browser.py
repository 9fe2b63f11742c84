"""The panels in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium driven by Playwright (no browser download).

Opens tests/browser_workbench.ipynb (a Workbench over a small slice of the sample corpus), runs it, clicks Run in the
Clean tab and Start then Stop in the Train tab, and checks in the page that the funnel and the live loss curve
rendered and that the curve stops growing after Stop. Also opens a report.html written by `llmwork.viz` with every
network request refused and checks its figures render. Screenshots go to test-output/browser/.

Needs: `apt-get install -y chromium` (/usr/bin/chromium), `pip install playwright jupyterlab` (never `playwright
install`). Skipped, with the reason, when either is missing.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

CHROMIUM = os.environ.get("LLMWORK_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-output" / "browser"


def _missing() -> str | None:
    if not Path(CHROMIUM).exists(): return f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set LLMWORK_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError: return "playwright is not installed (pip install playwright; no `playwright install` needed)"
    if shutil.which("jupyter-lab") is None and not (Path(sys.executable).parent / "jupyter-lab").exists():
        return "jupyterlab is not installed (pip install jupyterlab)"
    return None


pytestmark = [pytest.mark.skipif(_missing() is not None, reason=f"browser test skipped: {_missing()}"),
              pytest.mark.timeout(1200)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try: yield b
        finally: b.close()


@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on 127.0.0.1 serving a folder with the workbench notebook and a corpus slice."
    from llmwork.io import sample_corpus_path
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(Path(__file__).parent / "browser_workbench.ipynb", root / "workbench.ipynb")
    shutil.copy(Path(__file__).parent / "data" / "classify_topics.csv", root / "labelled.csv")
    pd.read_json(sample_corpus_path(), lines=True, nrows=300).to_json(root / "slice.jsonl", orient="records", lines=True)
    # the news and update pop-up covers the page in screenshots: turn it off in a private settings folder
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), "llmwork-browser-test"
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"), LLMWORK_BACKEND="cpu")
    log = open(tmp_path / "jupyterlab.log", "w")
    jupyter_lab = shutil.which("jupyter-lab") or str(Path(sys.executable).parent / "jupyter-lab")
    proc = subprocess.Popen([jupyter_lab, "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).status == 200: break
            except OSError: pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start; see {tmp_path / 'jupyterlab.log'}:\n{(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield {"url": url, "token": token, "root": root}
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()


def _outcome(panel, timeout=240_000) -> str:
    "Wait until `panel` shows a success or an error line; fail with the panel's message on an error."
    line = panel.locator(".llmwork-success, .llmwork-error")
    line.first.wait_for(timeout=timeout)
    text = line.first.inner_text()
    assert "llmwork-error" not in (line.first.get_attribute("class") or ""), f"the panel reported an error: {text}"
    return text


def _shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_workbench_clean_and_train_in_jupyterlab(lab, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.set_default_timeout(120_000)
    page.goto(f"{lab['url']}/lab/tree/workbench.ipynb?token={lab['token']}")
    # Run All before the kernel is idle opens a "Select Kernel" dialog and silently runs nothing
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    page.locator(".jp-InputPrompt", has_text="[1]:").wait_for()
    workbench = page.locator(".llmwork-workbench")
    workbench.wait_for()
    assert "engine cpu" in page.locator(".llmwork-header").inner_text()
    _shot(page, "01-workbench")

    # Clean tab: Run, then the funnel rendered with one stage per step and the status line
    clean = page.locator(".llmwork-clean")
    _watch_progress(page, ".llmwork-clean")
    clean.locator("button.jupyter-button", has_text="Run").click()
    assert "Kept" in _outcome(clean)
    seen = _progress_seen(page, ".llmwork-clean")
    assert any(5 < v < 95 for v in seen), f"the progress bar showed no intermediate value: {seen}"
    assert seen == sorted(seen) and seen[-1] == 100, seen  # never backwards (after the reset to 0 at Run)
    funnel = clean.locator(".js-plotly-plot")
    funnel.wait_for()
    page.wait_for_function("""() => { const gd = document.querySelector('.llmwork-clean .js-plotly-plot');
                                      return gd.data && gd.data[0] && gd.data[0].x && gd.data[0].x.length > 0; }""")  # drawn before its data
    stages = funnel.evaluate("gd => ({type: gd.data[0].type, x: Array.from(gd.data[0].x), y: Array.from(gd.data[0].y)})")
    assert stages["type"] == "funnel"
    assert stages["y"][0] == "input" and stages["x"][0] == 300
    assert stages["x"] == sorted(stages["x"], reverse=True) and len(stages["x"]) >= 3
    assert clean.locator(".funnellayer .trace").count() == 1  # drawn as SVG, not only present as data
    report = json.loads((lab["root"] / "workbench-out" / "clean" / "report.json").read_text())
    assert stages["x"][-1] == report["n_kept"]
    assert f"Kept {report['n_kept']:,} of 300 documents" in clean.locator(".llmwork-status").inner_text()
    _shot(page, "02-clean-funnel")

    # removed documents say why in numbers: the commonest Gopher reason's sample shows each one's measured value
    gopher = next(s for s in report["steps"] if s["name"] == "gopher_quality")
    reason, count = max(gopher["reasons"].items(), key=lambda kv: kv[1])
    clean.locator("select").filter(has=page.locator("option", has_text=reason)).select_option(label=f"{reason} ({count:,})")
    page.wait_for_function(f"""() => (document.querySelector('.llmwork-clean .llmwork-reason') || {{}}).innerText
                                     ?.startsWith({json.dumps(reason + ':')})""")
    table = clean.locator("table.llmwork-removed")
    column = table.locator("th").all_inner_texts().index("detail") + 1
    details = table.locator(f"tbody tr td:nth-child({column})").all_inner_texts()
    assert details and all(re.fullmatch(r".+ -?[\d.]+ [<>] \w+(\[\d+\])? [\d.]+", d) for d in details), details
    assert "<NA>" not in table.inner_text()
    _shot(page, "02b-clean-removed")

    # Cluster tab: Run on the kept documents, the WebGL map rendered, and hovering a point shows its document
    page.locator(".lm-TabBar-tab", has_text="Cluster").click()
    cluster = page.locator(".llmwork-cluster")
    _watch_progress(page, ".llmwork-cluster")
    cluster.locator("button.jupyter-button", has_text="Run").click()
    assert "clusters" in _outcome(cluster, timeout=480_000)  # the default UMAP map compiles for up to a minute on first use
    seen = _progress_seen(page, ".llmwork-cluster")
    assert any(5 < v < 95 for v in seen) and seen == sorted(seen) and seen[-1] == 100, seen
    cluster_map = cluster.locator(".js-plotly-plot")
    cluster_map.wait_for()
    page.wait_for_function("""() => { const gd = document.querySelector('.llmwork-cluster .js-plotly-plot');
                                      return gd.data && gd.data.length > 0 && gd.data[0].x && gd.data[0].x.length > 0; }""")  # drawn before its data
    traces = cluster_map.evaluate("gd => gd.data.map(t => [t.type, t.x.length])")
    assert [t for t, _ in traces] == ["scattergl"] * 4 and sum(n for _, n in traces) == report["n_kept"]
    assert cluster_map.evaluate("gd => gd.layout.xaxis.title.text") == "UMAP 1"  # the map that separates clusters
    colours = cluster_map.evaluate("gd => gd.data.map(t => t.marker.color)")
    assert len(set(colours)) == 4, colours
    assert cluster_map.evaluate("gd => gd.data[0].hovertext[0]").startswith("<b>debian:")
    # move the mouse onto the first point of the first trace, as a user would
    x, y = cluster_map.evaluate("""gd => { const L = gd._fullLayout, box = gd.getBoundingClientRect();
        return [box.left + L._size.l + L.xaxis.d2p(gd.data[0].x[0]), box.top + L._size.t + L.yaxis.d2p(gd.data[0].y[0])]; }""")
    page.mouse.move(x, y)
    hover = cluster.locator(".hoverlayer .hovertext")
    hover.first.wait_for(timeout=10_000)
    shown = hover.first.text_content()  # an SVG label: the cluster, the document's id and the start of its text
    assert shown.startswith("cluster ") and "debian:" in shown, shown
    assert cluster.locator("table tr").count() == 5  # the cluster table: header + 4 clusters
    _shot(page, "03-cluster-map")
    # k=0 is refused in plain words beside the field, and the field keeps what was typed
    k_field = cluster.locator(".widget-text", has_text="Clusters (k)").locator("input")
    k_field.fill("0"); k_field.press("Enter")
    cluster.get_by_text("k is 0: clustering needs at least 2 clusters; enter 2 or more.").first.wait_for(timeout=10_000)
    assert k_field.input_value() == "0"
    _shot(page, "03b-cluster-k0")

    # Train tab: Start, the loss curve grows; Stop, it stops at the step the status reports
    page.locator(".lm-TabBar-tab", has_text="Train").click()
    train = page.locator(".llmwork-train")
    curve = train.locator(".js-plotly-plot")
    train.locator("button.jupyter-button", has_text="Start").click()
    page.wait_for_function("""() => { const gd = document.querySelector('.llmwork-train .js-plotly-plot');
                                      return gd && gd.data && gd.data[0].x && gd.data[0].x.length >= 5; }""",
                           timeout=240_000)
    assert curve.locator(".scatterlayer .trace").count() >= 1
    _shot(page, "04-train-live-loss")
    train.locator("button.jupyter-button", has_text="Stop").click()
    status = train.locator(".llmwork-success", has_text="Stopped at step")
    status.wait_for(timeout=120_000)
    stopped_at = int(status.inner_text().split("Stopped at step")[1].split(",")[0].replace(",", "").strip())
    n_points = curve.evaluate("gd => gd.data[0].x.length")
    last_step = curve.evaluate("gd => gd.data[0].x[gd.data[0].x.length - 1]")
    assert last_step == stopped_at and n_points == stopped_at
    time.sleep(2)
    assert curve.evaluate("gd => gd.data[0].x.length") == n_points  # nothing arrives after Stop
    losses = curve.evaluate("gd => Array.from(gd.data[0].y)")
    assert all(l == l and l > 0 for l in losses)  # real numbers, no NaN
    assert train.locator("select option", has_text=f"step {stopped_at:,}").count() == 1  # the checkpoint listed
    _shot(page, "05-train-stopped")
    # Resume continues from that checkpoint: the curve goes on at the next step, then Stop again
    train.locator("button.jupyter-button", has_text="Resume").click()
    page.wait_for_function(f"""() => {{ const gd = document.querySelector('.llmwork-train .js-plotly-plot');
                                        return gd.data[0].x.length >= {n_points + 3}; }}""", timeout=240_000)
    steps = curve.evaluate("gd => Array.from(gd.data[0].x)")
    assert steps[n_points - 1:n_points + 2] == [stopped_at, stopped_at + 1, stopped_at + 2], steps[n_points - 3:n_points + 3]
    train.locator("button.jupyter-button", has_text="Stop").click()
    resumed = train.locator(".llmwork-success", has_text="Stopped at step")
    resumed.wait_for(timeout=120_000)
    assert int(resumed.inner_text().split("Stopped at step")[1].split(",")[0].replace(",", "").strip()) > stopped_at + 2
    _shot(page, "05b-train-resumed")

    # Search tab: the cleaned kept/ by text, predicate, id and meaning, each with its results table
    kept = pd.read_parquet(lab["root"] / "workbench-out" / "clean" / "kept")
    page.locator(".lm-TabBar-tab", has_text="Search").click()
    search = page.locator(".llmwork-search")
    search.locator("button.jupyter-button", has_text="Open").click()
    search.locator(".llmwork-success", has_text="Opened").wait_for(timeout=60_000)
    kind = search.locator(".widget-dropdown", has_text="Search by").locator("select")
    query = search.locator("input[placeholder^='a word or regex']")
    table_html = "() => (document.querySelector('.llmwork-search table.dataframe') || {}).outerHTML || ''"
    def results(kind_name, text):
        "Run one query and wait for its table to replace the previous one (each query here finds different rows)."
        before = page.evaluate(table_html)
        kind.select_option(kind_name)
        query.fill(text)
        search.locator("button.jupyter-button", has_text="Search").click()
        page.wait_for_function(f"before => ({table_html})() !== before && ({table_html})() !== ''", arg=before, timeout=120_000)
        return [r.locator("td").first.inner_text() for r in search.locator("table.dataframe tbody tr").all()]
    assert len(results("text (regex)", "library")) >= 1
    games = results("predicate", 'section == "games"')
    assert set(games) <= set(kept.loc[kept["section"] == "games", "id"]) and games, games
    assert results("id", kept["id"].iloc[3]) == [kept["id"].iloc[3]]
    kind.select_option("like text")  # the Cluster tab embedded these very documents: Search reuses its vectors
    search.locator(".llmwork-success", has_text="embeddings").wait_for(timeout=240_000)
    query.fill(kept["text"].iloc[5])
    search.locator("button.jupyter-button", has_text="Search").click()
    page.wait_for_function("id => [...document.querySelectorAll('.llmwork-search table.dataframe tbody tr td:first-child')]"
                           ".some(td => td.innerText === id)", arg=kept["id"].iloc[5], timeout=120_000)
    first = search.locator("table.dataframe tbody tr").first.locator("td").first.inner_text()
    assert first == kept["id"].iloc[5], first  # a document's own text finds it first
    assert "score" in search.locator("table.dataframe thead").inner_text()
    _shot(page, "05c-search")

    # Classify tab: a missing file is refused in words; the labelled file gives the report and a drawn confusion matrix
    page.locator(".lm-TabBar-tab", has_text="Classify").click()
    classify = page.locator(".llmwork-classify")
    path_field = classify.locator(".widget-text", has_text="Labelled").locator("input")
    path_field.fill("missing.csv"); path_field.press("Enter")
    classify.locator("button.jupyter-button", has_text="Run").click()
    error = classify.locator(".llmwork-error")
    error.wait_for(timeout=60_000)
    assert "missing.csv" in error.inner_text() and "Traceback" not in error.inner_text(), error.inner_text()
    path_field.fill("labelled.csv"); path_field.press("Enter")
    classify.locator("button.jupyter-button", has_text="Run").click()
    error.wait_for(state="detached", timeout=60_000)  # the new run replaces the old message before its outcome
    assert "accuracy" in _outcome(classify)
    assert "macro avg" in classify.locator("pre").inner_text()
    matrix = classify.locator(".js-plotly-plot")
    matrix.wait_for(timeout=60_000)
    assert matrix.evaluate("gd => gd.data[0].type") == "heatmap"
    assert classify.locator(".heatmaplayer image").count() >= 1  # drawn, not only present as data
    _shot(page, "06-classify")

    # Tune tab: the trials table and a drawn parallel-coordinates plot
    page.locator(".lm-TabBar-tab", has_text="Tune").click()
    tune = page.locator(".llmwork-tune")
    tune.locator("button.jupyter-button", has_text="Run").click()
    status = _outcome(tune)
    assert "Best eval loss" in status and "&#x27;" not in status and "{" not in status, status
    assert tune.locator("table tr").count() == 3  # header + 2 trials
    coords = tune.locator(".js-plotly-plot")
    coords.wait_for(timeout=60_000)
    assert coords.evaluate("gd => gd.data[0].type") == "parcoords"
    assert tune.locator(".parcoords .axis").count() >= 3, tune.locator(".js-plotly-plot").inner_html()[:2000]
    _shot(page, "07-tune")


def _watch_progress(page, panel: str):
    "Record in the page every width the panel's progress bar takes (a MutationObserver: nothing is missed between polls)."
    page.evaluate("""sel => { const bar = document.querySelector(sel + ' .progress-bar');
        window.__progress = window.__progress || {}; const seen = window.__progress[sel] = [];
        new MutationObserver(() => seen.push(parseFloat(bar.style.width))).observe(bar, {attributes: true}); }""", panel)


def _progress_seen(page, panel: str) -> list:
    seen = page.evaluate("sel => window.__progress[sel]", panel)
    while seen and seen[0] != 0: seen = seen[1:]  # Run resets the bar to 0 first
    return [round(v) for v in seen]


def test_report_opens_offline(tmp_path, browser):
    "report.html renders its figures with every network request refused."
    import numpy as np
    from llmwork import viz
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    vectors = rng.normal(size=(300, 8)) + labels[:, None]
    report = {"n_in": 10, "n_kept": 7, "steps": [{"name": "exact_dedup", "n_in": 10, "n_removed": 3, "n_out": 7,
                                                  "chars_in": 100, "chars_out": 70, "reasons": {"exact_duplicate": 3}}]}
    path = viz.write_report(tmp_path, {"Funnel": viz.cleaning_funnel(report),
                                       "Map": viz.cluster_map(vectors, labels, [f"doc {i}" for i in range(300)]),
                                       "Sizes": viz.cluster_sizes(labels)})
    requests = []
    page = browser.new_page()
    page.route("**/*", lambda route: (requests.append(route.request.url), route.abort())
               if not route.request.url.startswith("file://") else route.continue_())
    page.goto(path.as_uri())
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3", timeout=60_000)
    assert page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => gd.data[0].type)") == \
        ["funnel", "scattergl", "bar"]
    assert requests == []
    _shot(page, "06-report-offline")
