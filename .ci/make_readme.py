"""Write README.md from nbs/index.ipynb (quarto, which nbdev_readme needs, cannot be installed offline).

Markdown cells are copied as they are; code cells become ```python blocks (cells flagged `#| hide` or
`#| notest`-only helpers marked `#| hide` are left out); outputs are not copied. `--check` fails if README.md
is not what this would write.
"""
import sys
from pathlib import Path

import nbformat

root = Path(__file__).resolve().parent.parent

def readme_text() -> str:
    nb = nbformat.read(root / "nbs" / "index.ipynb", as_version=4)
    parts = []
    for cell in nb.cells:
        src = cell.source.strip()
        lines = src.splitlines()
        flags = [l for l in lines if l.startswith("#|")]
        if any("hide" in f for f in flags) or not src: continue
        if cell.cell_type == "markdown":
            parts.append(src)
        else:
            body = "\n".join(l for l in lines if not l.startswith("#|")).strip()
            if body: parts.append(f"```python\n{body}\n```")
    return "\n\n".join(parts) + "\n"

if __name__ == "__main__":
    text = readme_text()
    target = root / "README.md"
    if "--check" in sys.argv:
        if target.read_text(encoding="utf-8") != text:
            sys.exit("README.md is out of step with nbs/index.ipynb: run python .ci/make_readme.py and commit it.")
    else:
        target.write_text(text, encoding="utf-8")
