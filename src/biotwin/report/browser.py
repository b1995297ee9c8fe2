"""How long a report takes to draw in a real browser (headless Chromium driven by Playwright).

The report marks ``<body data-rendered>`` once every plot is drawn; the time from navigation to
that mark is what a reader waits. Wall-clock time depends on what else the machine runs; the CPU
time of the page's main thread does not, so both are measured.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

#: Where Debian's chromium package puts the browser (``make chromium`` installs it).
CHROMIUM = Path("/usr/bin/chromium")


def drawing_time(page: Any, url: str, timeout_ms: int = 30_000) -> tuple[float, float]:
    """Seconds from navigating ``page`` to ``url`` until every plot is drawn: wall-clock, and the page's main-thread CPU."""
    session = page.context.new_cdp_session(page)
    session.send("Performance.enable")

    def cpu() -> float:
        return next(m["value"] for m in session.send("Performance.getMetrics")["metrics"] if m["name"] == "ThreadTime")

    before, began = cpu(), time.perf_counter()
    page.goto(url)
    page.wait_for_selector("body[data-rendered]", timeout=timeout_ms)
    return time.perf_counter() - began, cpu() - before
