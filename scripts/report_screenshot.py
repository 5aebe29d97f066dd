"""Render a model folder's HTML report and screenshot it with headless Chromium (the README picture).

    python scripts/report_screenshot.py MODEL_DIR OUT.png [--width 1200] [--height 3000]

The report is written to a temporary file, checked in the browser (every image decoded), then
photographed. Chromium is driven by its command line only (``--dump-dom``, ``--screenshot``), each
run in its own process group under a timeout, with a throw-away profile. tests/test_report.py uses
the same functions.
"""

from __future__ import annotations

import argparse
import html as html_lib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PROBE_ID = "bertfit-probe"
# Added to a copy of the page: after load, write what the test needs to know into the DOM, for --dump-dom.
PROBE = f"""<script>
window.addEventListener("load", () => {{
  const probe = document.createElement("pre");
  probe.id = "{PROBE_ID}";
  probe.textContent = JSON.stringify({{
    images: [...document.images].map(img => ({{alt: img.alt, width: img.naturalWidth, complete: img.complete}})),
    ids: [...document.querySelectorAll("[id]")].map(el => el.id),
  }});
  document.body.appendChild(probe);
}});
</script>"""


def find_chromium() -> str | None:
    """The browser to drive: $BERTFIT_CHROMIUM, else the first of BROWSERS on PATH."""
    given = os.environ.get("BERTFIT_CHROMIUM")
    if given:
        return given if shutil.which(given) else None
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def run_chromium(url: str, *flags: str, timeout: float = 60) -> str:
    """Run headless Chromium on one URL and return its stdout; the whole process group dies on timeout."""
    browser = find_chromium()
    if browser is None:
        raise RuntimeError(f"no Chromium found (tried {', '.join(BROWSERS)}); apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="bertfit-chromium-") as profile:
        command = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--hide-scrollbars",
                   "--disable-extensions", f"--user-data-dir={profile}", *flags, url]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise RuntimeError(f"chromium did not finish within {timeout} s on {url}") from None
    if process.returncode != 0:
        raise RuntimeError(f"chromium exited {process.returncode} on {url}: {err.strip()[-500:]}")
    return out


def page_facts(html: Path, timeout: float = 60) -> dict:
    """Load the page in Chromium and report its images (alt, naturalWidth, complete) and element ids."""
    html = Path(html).resolve()
    with tempfile.TemporaryDirectory(prefix="bertfit-probe-") as folder:
        probed = Path(folder) / html.name
        probed.write_text(html.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
        dom = run_chromium(probed.as_uri(), "--dump-dom", "--virtual-time-budget=10000", timeout=timeout)
    found = re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', dom, re.S)
    if found is None:
        raise RuntimeError(f"the page {html} never finished loading in chromium (no probe in its DOM)")
    return json.loads(html_lib.unescape(found.group(1)))


def screenshot(html: Path, png: Path, width: int = 1200, height: int = 3000, timeout: float = 60) -> Path:
    """A PNG of the top width x height pixels of the page."""
    png = Path(png).resolve()
    png.unlink(missing_ok=True)
    run_chromium(Path(html).resolve().as_uri(), f"--screenshot={png}", f"--window-size={width},{height}",
                 timeout=timeout)
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {png}")
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--data", help="labelled file to score instead of the folder's test.jsonl")
    args = parser.parse_args(argv)

    from bertfit.reporting.report import write_report

    with tempfile.TemporaryDirectory(prefix="bertfit-report-") as folder:
        html = write_report(args.model_dir, Path(folder) / "report.html", args.data)
        broken = [img["alt"] for img in page_facts(html)["images"] if not img["width"]]
        if broken:
            print(f"error: images that did not load in chromium: {broken}", file=sys.stderr)
            return 1
        screenshot(html, Path(args.out), args.width, args.height)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
