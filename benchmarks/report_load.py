"""How long reports take to draw in headless Chromium, and how large they are.

The issue's target: a report loads in under 2 s and stays under 10 MB. Each report is opened
``--repeat`` times in a fresh page; the best wall-clock time and the page's main-thread CPU time
are printed with the machine's load (wall-clock time means the reader's wait only on a machine
not busy with other work).

    .venv/bin/python benchmarks/report_load.py demo/report.html demo/influenza_report.html
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from machine import print_machine, wide_console


def main() -> None:
    from playwright.sync_api import sync_playwright
    from rich.table import Table

    from biotwin.report.browser import CHROMIUM, drawing_time

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    console = wide_console(110)
    print_machine(console)
    table = Table(title=f"drawing time in headless Chromium (best and median of {args.repeat})")
    for column in ("report", "MB", "wall best (s)", "wall median (s)", "page CPU best (s)", "load per core"):
        table.add_column(column, justify="left" if column == "report" else "right")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        try:
            for report in args.reports:
                times = []
                for _ in range(args.repeat):
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    times.append(drawing_time(page, report.resolve().as_uri()))
                    page.close()
                walls = sorted(w for w, _ in times)
                busy = os.getloadavg()[0] / (os.cpu_count() or 1)
                table.add_row(str(report), f"{report.stat().st_size / 1e6:.2f}", f"{walls[0]:.2f}",
                              f"{walls[len(walls) // 2]:.2f}", f"{min(c for _, c in times):.2f}", f"{busy:.2f}")
        finally:
            browser.close()
    console.print(table)


if __name__ == "__main__":
    main()
