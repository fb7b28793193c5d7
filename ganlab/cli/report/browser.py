"""Open an HTML report in headless Chromium and check that it rendered (`report --check`).

Three looks at the page: `--dump-dom` (the inline script marks `<body data-rendered="ok">` once
every plot and image has rendered), the console log (`--enable-logging=stderr --v=0`: any JS
console message or uncaught exception fails the check) and a screenshot (must not be blank).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

BINARIES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
         "--no-first-run", "--disable-dev-shm-usage", "--virtual-time-budget=5000")
# every console line (`...:INFO:CONSOLE:1] "message", source: ...`; the level is not printed):
# the report logs nothing itself, so any message is an error or an uncaught exception
CONSOLE_ERROR = re.compile(r":CONSOLE(?::\d+|\(\d+\))\] (.*)")


@dataclass
class BrowserCheck:
    rendered: str  # the body's data-rendered marker: ok | broken | pending | missing
    counts: str  # plots / curves / images the page counted
    console_errors: list[str]
    screenshot: Path
    distinct_colors: int  # in the screenshot (a blank page has 1)

    @property
    def ok(self) -> bool:
        return self.rendered == "ok" and not self.console_errors and self.distinct_colors > 50


def find_chromium() -> str | None:
    """Path of a Chromium / Chrome binary on PATH, or None."""
    return next((p for p in map(shutil.which, BINARIES) if p), None)


def _chromium(binary: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:  # fresh profile: no state between checks
        return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def check_page(html: Path, screenshot: Path, width: int = 1400, height: int = 2000,
               timeout: float = 120.0) -> BrowserCheck:
    """Render `html` in headless Chromium; write `screenshot` (PNG) and return what was seen."""
    from PIL import Image

    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium binary on PATH: apt-get install -y chromium")
    url = Path(html).resolve().as_uri()
    dom = _chromium(binary, ["--enable-logging=stderr", "--v=0", "--dump-dom", url], timeout)
    marker = re.search(r'<body[^>]*data-rendered="(\w+)"', dom.stdout)
    counts = re.search(r'data-counts="([^"]*)"', dom.stdout)
    errors = [m.group(1) for m in CONSOLE_ERROR.finditer(dom.stderr)]
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    _chromium(binary, [f"--screenshot={screenshot.resolve()}", f"--window-size={width},{height}",
                       url], timeout)
    colors = len(Image.open(screenshot).convert("RGB").getcolors(1 << 24) or []) \
        if screenshot.is_file() else 0
    return BrowserCheck(marker.group(1) if marker else "missing",
                        counts.group(1) if counts else "", errors, screenshot, colors)
