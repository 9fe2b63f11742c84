"""The house rules, checked on the source: one meaning per public name, and a module imports only lower-numbered ones.

Under nbdev's `from llmwork.x import *` a name defined in two modules silently means whichever was imported last."""
import ast
import json
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# names every module may define, because callers look them up on the module, never import them bare
MODULE_HOOKS = {"add_commands", "gpu_calls"}


def _modules() -> dict:
    "Module name -> its position in notebook order, from each notebook's `#| default_exp`."
    order = {}
    for i, nb in enumerate(sorted((ROOT / "nbs").glob("*.ipynb"))):
        for cell in json.loads(nb.read_text())["cells"]:
            m = re.search(r"^#\| default_exp (\w+)", "".join(cell["source"]), re.M)
            if m: order[m.group(1)] = i; break
    return order


def _public_names(path: Path) -> set:
    "Top-level functions, classes and assigned names of a module that do not start with an underscore."
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return {n for n in names if not n.startswith("_")}


def test_each_public_name_is_defined_once():
    where = defaultdict(list)
    for name in _modules():
        for n in _public_names(ROOT / "llmwork" / f"{name}.py"): where[n].append(name)
    where.pop("log", None)  # logging.getLogger("llmwork"): the same object wherever it is bound
    twice = {n: sorted(m) for n, m in where.items() if len(m) > 1 and n not in MODULE_HOOKS}
    assert twice == {}, f"defined in more than one module: {twice}"


def _top_level_imports(path: Path) -> set:
    "The llmwork modules `path` imports when it is imported (not the imports inside functions)."
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1: found |= {mod.split(".")[0]} if mod else {a.name for a in node.names}
            elif mod.startswith("llmwork."): found.add(mod.split(".")[1])
            elif mod == "llmwork": found |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("llmwork.")}
    return found


def test_modules_import_only_lower_numbered_ones():
    order = _modules()
    wrong = {name: sorted(m for m in _top_level_imports(ROOT / "llmwork" / f"{name}.py") if m in order and order[m] >= order[name])
             for name in order}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_checks_can_fail(tmp_path):
    "The two checks above see what they are meant to see."
    (tmp_path / "m.py").write_text("from .later import x\nimport llmwork.other\ndef f():\n    from llmwork.lazy import y\n"
                                   "class C: pass\nLIMIT = 3\n_private = 1\n")
    assert _top_level_imports(tmp_path / "m.py") == {"later", "other"}
    assert _public_names(tmp_path / "m.py") == {"f", "C", "LIMIT"}
    assert {"backend", "train", "compress", "tune", "ingest", "elastic", "cli"} <= set(_modules())
    assert "platform" not in _modules()


# the words for an output folder that one word (`out_dir`, shown as OUT_DIR and --out-dir) replaced
OTHER_OUTPUT_WORDS = re.compile(r"\bOUTPUT\b|\bOUTDIR\b|--output\b|--out\b(?!-)")


def _help_texts() -> dict:
    "The --help text of every llmwork command."
    import argparse
    from llmwork.cli import build_parser
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {name: sub.format_help() for name, sub in commands.items()}


def test_one_word_for_the_output_folder():
    helps = _help_texts()
    assert len(helps) > 10
    assert {name: OTHER_OUTPUT_WORDS.findall(text) for name, text in helps.items() if OTHER_OUTPUT_WORDS.search(text)} == {}
    assert "OUT_DIR" in helps["clean"] and "OUT_DIR" in helps["train"] and "--out-dir" in helps["demo"]
    # and in Python: no public function names its output folder `output`, `outdir` or `out_root`
    found = {}
    for name in _modules():
        for node in ast.walk(ast.parse((ROOT / "llmwork" / f"{name}.py").read_text())):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                bad = [a.arg for a in node.args.args if a.arg in ("output", "outdir", "out_root", "output_dir")]
                if bad: found[f"{name}.{node.name}"] = bad
    assert found == {}
    assert OTHER_OUTPUT_WORDS.findall("llmwork clean IN OUTPUT --out x --out-dir y") == ["OUTPUT", "--out"]  # the check can fail


def _private_uses(source: str) -> list:
    "Private names (`_x`) a module takes from another llmwork module: imported, or read off an imported module."
    tree, modules, found = ast.parse(source), set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("llmwork")):
            for a in node.names:
                if a.name.startswith("_"): found.append(a.name)
                elif node.module in (None, "llmwork"): modules.add(a.asname or a.name)  # `from . import fuzzy as fz`
        if isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.name.startswith("llmwork.") and a.asname}
    found += [f"{n.value.id}.{n.attr}" for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
              and n.value.id in modules and n.attr.startswith("_") and not n.attr.startswith("__")]
    return found


def test_modules_use_only_each_others_public_names():
    found = {name: uses for name in _modules() if (uses := _private_uses((ROOT / "llmwork" / f"{name}.py").read_text()))}
    assert found == {}
    assert sorted(_private_uses("from .fuzzy import _b, c\nfrom . import fuzzy as fz\nfz._d(1)\nimport llmwork.io as io\nio._e")) == ["_b", "fz._d", "io._e"]


def test_shared_options_mean_one_thing_everywhere():
    "--backend and --scheduler: one help text each across every command; --overwrite: one phrasing (what it replaces differs)."
    import argparse
    from llmwork.cli import build_parser
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    helps = defaultdict(set)
    for name, sub in commands.items():
        for action in sub._actions:
            for option in ("--backend", "--scheduler", "--overwrite"):
                if option in action.option_strings: helps[option].add(action.help)
    overwrite = helps.pop("--overwrite")
    assert {k: len(v) for k, v in helps.items()} == {"--backend": 1, "--scheduler": 1}, dict(helps)
    assert len(overwrite) > 3 and all(h.startswith("replace ") and h.endswith(" if it exists") for h in overwrite), overwrite
    assert "'local'" in next(iter(helps["--scheduler"]))
