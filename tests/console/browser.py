"""A headless Chromium for the console tests: Debian's package, driven by Playwright.

Playwright's own browser downloads are never used: the tests launch ``/usr/bin/chromium``
from Debian's ``chromium`` package, and install that package (as root, with apt-get) when
it is missing. Only if that install is impossible do the browser tests skip, saying why.
Screenshots go to ``.tmp/artifacts/console/`` (git ignores ``.tmp``), to be looked at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".tmp" / "artifacts" / "console"
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
_INSTALL_TIMEOUT_SECONDS = 900


def chromium_executable() -> str:
    """The path of Debian's Chromium, installed first if it is missing."""
    found = _installed()
    if found is not None:
        return found

    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed, and only root with apt-get can install it here")

    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environment,
            timeout=_INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"could not install Debian's chromium: {result.stderr.strip()[-400:]}")

    found = _installed()
    if found is None:
        pytest.skip("apt-get installed chromium, but no chromium executable is on the PATH")
    return found


def _installed() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"
