"""Regenerate the WARC fixtures in this folder (run from the repository root: python tests/data/warc/make_fixtures.py).

The pages are Debian's python3.11-doc HTML (the Python documentation, PSF licence; apt-get install python3.11-doc),
written with warcio by llmwork.warc.write_warc, plus records that must be refused: a 404, non-HTML payloads, a page
that declares UTF-8 but is Windows-1252 (kept: detected), bytes no charset decodes, a page without Content-Type
(sniffed) and a gzip member cut short at the end of a file."""
import glob, os
from pathlib import Path
from llmwork.warc import write_warc

HERE = Path(__file__).parent
DOCS = "/usr/share/doc/python3.11/html"

def pages(n, skip):
    files = sorted(f for f in glob.glob(f"{DOCS}/**/*.html", recursive=True) if 4_000 < os.path.getsize(f) < 24_000)
    picked = files[skip::6][:n]
    return [{"url": "https://docs.python.org/3.11/" + os.path.relpath(f, DOCS), "body": open(f, "rb").read(),
             "date": f"2024-03-{1 + i % 28:02d}T12:00:00Z"} for i, f in enumerate(picked)]

def main():
    latin = ("<html><head><meta charset='utf-8'><title>Café</title></head><body><p>"
             + "Déjà vu au café : voilà une crème brûlée, naïve et très française. " * 8 + "</p></body></html>")
    write_warc(HERE / "crawl-00000.warc.gz", pages(15, 0) + [
        {"url": "https://docs.python.org/3.11/missing.html", "body": b"<html><body><h1>Not Found</h1></body></html>", "status": 404},
        {"url": "https://docs.python.org/3.11/_images/logo.png", "body": b"\x89PNG\r\n\x1a\n" + bytes(300), "content_type": "image/png"}])
    path = HERE / "crawl-00001.warc.gz"
    write_warc(path, pages(15, 1) + [
        {"url": "https://example.org/latin1", "body": latin.encode("cp1252")},
        {"url": "https://example.org/junk", "body": bytes(range(128, 256)) * 8},
        {"url": "https://example.org/untyped", "body": pages(1, 2)[0]["body"], "content_type": ""},
        {"url": "https://example.org/cut", "body": pages(1, 3)[0]["body"]}])
    data = path.read_bytes()
    path.write_bytes(data[:-400])  # the last gzip member (the "cut" response) ends early
    write_warc(HERE / "crawl-00002.warc", pages(5, 4) + [
        {"url": "https://docs.python.org/3.11/_sources/index.rst.txt", "body": b"Python documentation\n" * 20,
         "content_type": "text/plain; charset=utf-8"}], gzip=False)

if __name__ == "__main__": main()
