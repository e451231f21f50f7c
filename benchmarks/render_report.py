"""Render a plbench report in headless Chromium: screenshots to look at, and checks that the page loads with
no console message, embeds every image as a PNG data URI and fetches nothing.

    python benchmarks/render_report.py       # fixture runs -> report -> render (OUT: /tmp/plbench-render)
    python benchmarks/render_report.py --html reports/demo/report.html --out /tmp/shots

Writes OUT/screenshot.png (1200 x 3000, the top of the page) and OUT/page-N.png (the whole page cut into
1200 x 2400 parts). Exit status 0 when every check passes, 1 otherwise (the failures are printed), 2 when
Chromium is missing (install Debian's: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]
PNG = b"\x89PNG\r\n\x1a\n"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium(binary: str, url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args, url], capture_output=True,
                              text=True, timeout=timeout)


def static_problems(page: str) -> list[str]:
    """Self-containment: every src/href is a PNG data URI (that decodes to a PNG) or an in-page anchor."""
    problems = []
    targets = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page, re.I)
    for t in targets:
        if t.startswith("#"):
            continue
        if not t.startswith("data:image/png;base64,"):
            problems.append(f"external or non-PNG resource: {t[:80]}")
            continue
        try:
            if not base64.b64decode(t.split(",", 1)[1], validate=True).startswith(PNG):
                problems.append("a data URI that is not a PNG")
        except ValueError:
            problems.append("a data URI that is not valid base64")
    for m in re.finditer(r"https?://[^\s\"'<>]+", page):
        problems.append(f"URL in the page: {m.group(0)[:80]}")
    if "@import" in page or "url(" in page:
        problems.append("CSS that may fetch a resource (@import or url())")
    return problems


def check(html_path: Path, out: Path, binary: str, height: int = 20000) -> list[str]:
    """Render ``html_path``; returns the problems found (empty: all good). Screenshots go to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    page = html_path.read_text(encoding="utf-8")
    problems = static_problems(page)
    url = html_path.resolve().as_uri()
    dom = chromium(binary, url, "--dump-dom")
    if dom.returncode != 0:
        problems.append(f"chromium --dump-dom exited with {dom.returncode}: {dom.stderr[-500:]}")
    problems += [f"console: {line.strip()}" for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    if title and title.group(1) not in dom.stdout:
        problems.append("the rendered DOM lacks the page title")
    top = chromium(binary, url, f"--screenshot={out / 'screenshot.png'}", "--window-size=1200,3000")
    full = chromium(binary, url, f"--screenshot={out / 'full.png'}", f"--window-size=1200,{height}")
    for name, run in (("screenshot.png", top), ("full.png", full)):
        problems += [f"console: {line.strip()}" for line in run.stderr.splitlines() if ":CONSOLE" in line]
        if run.returncode != 0 or not (out / name).is_file():
            problems.append(f"no {name} (chromium exited with {run.returncode})")
    if (out / "full.png").is_file():
        _cut(out / "full.png", out)
    return problems


def _cut(path: Path, out: Path, part: int = 2400) -> None:
    """The full-page shot cut into parts an image viewer shows at a readable scale; blank tail dropped."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        gray = np.asarray(im.convert("L"))
        used = np.where((gray < 250).any(axis=1))[0]
        end = int(used.max()) + 20 if used.size else im.height
        for i, y in enumerate(range(0, end, part)):
            im.crop((0, y, im.width, min(y + part, end))).save(out / f"page-{i}.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", type=Path, help="report.html to check (default: a report of fixture runs)")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "plbench-render")
    ap.add_argument("--height", type=int, default=20000, help="window height of the full-page screenshot (px)")
    args = ap.parse_args()
    binary = find_chromium()
    if binary is None:
        print("chromium not found: install Debian's (apt-get install -y chromium)", file=sys.stderr)
        return 2
    html_path = args.html
    if html_path is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from report_fixture import write_fixture

        from plbench.report import write_report

        runs = write_fixture(args.out / "fixture")
        html_path = write_report([runs], args.out / "report", title="plbench report of fixture runs (not results)",
                                 command=f"python benchmarks/report_fixture.py {args.out / 'fixture'}")["html"]
    problems = check(html_path, args.out, binary, args.height)
    for p in problems:
        print(f"FAIL {p}")
    print(f"{'FAIL' if problems else 'OK'}: {html_path} rendered; screenshots in {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
