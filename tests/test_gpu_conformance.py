"""Conformance of the GPU engine, proven on a CPU against cuDF's own code (the gpu extra installed, no GPU needed).

Every cuDF call the cleaning steps make is recorded on the CPU engine (llmwork.engine), then bound to the real
cuDF/pylibcudf signature and every pattern compiled by libcudf's compiler; the translated patterns are checked to
match exactly what RE2 matches on the probe corpus. These tests fail if any pattern or call does not conform."""
import importlib, importlib.util, subprocess, sys
from dataclasses import fields, MISSING

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pylibcudf") is None,
                                reason="needs the gpu extra (pip install '.[gpu]'; no GPU needed); CI installs it")

from llmwork import engine
from llmwork.clean import STEPS, STEP_MODULES, default_steps
from llmwork.dialect import same_matches
from llmwork.gpu_check import format_findings, gpu_check, pipeline_calls, probe_corpus


def _constructible_steps():
    for module in set(STEP_MODULES.values()): importlib.import_module(module)
    out = []
    for name, cls in sorted(STEPS.items()):
        try: out.append(cls())
        except ValueError: pass  # needs a user's argument (quality_classifier: a model path)
    return out


def test_default_pipeline_and_fuzzy_presets_conform():
    from llmwork.fuzzy import FuzzyDedup
    findings = gpu_check(None, n_sample=100, extra_steps=[FuzzyDedup(preset="nemo"), FuzzyDedup(preset="fineweb")], paths=True)
    assert [f for f in findings if f.problem] == [], format_findings(findings)
    assert sum(f.patterns for f in findings) >= 50  # the filters' patterns really were compiled


@pytest.mark.parametrize("step", _constructible_steps(), ids=lambda s: s.name)
def test_every_registered_step_conforms(step):
    if step.name == "validate": return  # every check runs it first
    findings = gpu_check([step], n_sample=60)
    assert [f for f in findings if f.problem] == [], format_findings(findings)


def test_translations_match_what_re2_matches_on_the_probe_corpus():
    texts = probe_corpus(200)["text"].tolist()
    calls, _ = pipeline_calls(default_steps(), n_sample=20)
    regexes = {(rx.source, rx.flags) for c in calls for rx in c.regexes}
    assert len(regexes) >= 40
    for source, flags in sorted(regexes):
        assert same_matches(source, texts, flags) == [], f"{source!r} ({flags}) matches differently once translated"


def test_a_boilerplate_pattern_libcudf_cannot_express_fails_naming_step_and_pattern(tmp_path):
    config = tmp_path / "pipeline.yaml"
    config.write_text("steps:\n  - step: strip_boilerplate\n    patterns: ['^(?=cookie)accept', 'all rights reserved']\n")
    run = subprocess.run([sys.executable, "-c", "from llmwork.cli import main; raise SystemExit(main())", "gpu-check", str(config), "--sample", "20"],
                         capture_output=True, text=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL strip_boilerplate" in run.stdout and "pattern '^(?=cookie)accept'" in run.stdout


def test_gpu_check_without_the_gpu_extra_says_so_and_exits_2(monkeypatch, capsys):
    import argparse
    from llmwork import gpu_check as gc
    real = importlib.util.find_spec
    monkeypatch.setattr(gc.importlib.util, "find_spec", lambda name, *a: None if name in ("cudf", "pylibcudf") else real(name, *a))
    assert gc.gpu_check_command(argparse.Namespace(config=None, sample=10)) == 2
    assert "pip install 'llmwork[gpu]'" in capsys.readouterr().out


def test_recorded_calls_name_the_step_they_run_in():
    calls, findings = pipeline_calls(default_steps(), n_sample=10)
    assert {"clean_whitespace", "gopher_quality", "c4_quality", "exact_dedup"} <= {c.step for c in calls}
    assert all(c.step for c in calls)


def test_cudf_has_none_of_the_calls_that_broke_the_gpu_engine():
    import cudf
    assert not hasattr(cudf.Series, "set_index")  # why UnicodeNormalize goes through engine.normalize
    with engine.recording() as calls:
        import pandas as pd
        engine.normalize(pd.Series(["ﬁ"]))
    assert all(f.problem is None for f in map(__import__("llmwork.gpu_check", fromlist=["check_call"]).check_call, calls))


def test_dataframe_methods_the_cleaning_steps_share_with_pandas_exist_in_cudf():
    """The calls that do not go through llmwork.engine are dataframe API that pandas and cuDF share: every method
    name clean.py calls that pandas' Series/DataFrame/GroupBy/.str define must exist on cuDF's counterpart too."""
    import ast, inspect as ins
    import cudf, pandas as pd
    from cudf.core.accessors.string import StringMethods
    from cudf.core.groupby.groupby import DataFrameGroupBy, SeriesGroupBy
    import llmwork.clean as clean
    modules = {k for k, v in vars(clean).items() if ins.ismodule(v)}  # re.sub, np.unique...: not frame methods
    names = {n.func.attr for n in ast.walk(ast.parse(ins.getsource(clean)))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and not (isinstance(n.func.value, ast.Name) and n.func.value.id in modules | {"self", "step", "cls"})}
    cpu_classes = [pd.Series, pd.DataFrame, pd.core.strings.accessor.StringMethods, pd.core.groupby.SeriesGroupBy,
                   pd.core.groupby.DataFrameGroupBy]
    gpu_classes = [cudf.Series, cudf.DataFrame, StringMethods, SeriesGroupBy, DataFrameGroupBy]
    # by name only (the receiver's type is not known statically): a pandas method name no cuDF class has is a bug
    missing = sorted(name for name in names if not name.startswith("_") and any(hasattr(c, name) for c in cpu_classes)
                     and not any(hasattr(g, name) for g in gpu_classes))
    assert missing == [], f"clean.py calls pandas methods cuDF lacks: {missing}"
