"""Debian's chromium as the tests and benchmarks drive it through Playwright (never
``playwright install``): its path and the flags for a headless run in a container."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
