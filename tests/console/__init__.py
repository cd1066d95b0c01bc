"""Helpers for the console's browser tests: Debian's Chromium, driven by Playwright."""
