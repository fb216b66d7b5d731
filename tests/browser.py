"""The headless-Chromium driver moved to `bench.harness.browser` (a benchmark drives it too);
this name stays for the tests that still import it from here (the web viewer's)."""

from bench.harness.browser import BrowserError, Chromium, Page, chromium_path

__all__ = ["BrowserError", "Chromium", "Page", "chromium_path"]
