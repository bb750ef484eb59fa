"""Debian's Chromium driven by Debian's chromedriver (Selenium), headless, with no network beyond 127.0.0.1:
nothing is downloaded, neither a browser nor a driver."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium")


@contextmanager
def chrome(profile: Path, *, width: int = 1280, height: int = 900, phone: bool = False) -> Iterator[Any]:
    """A WebDriver on Chromium: a desktop window ``width`` wide, or (``phone``) a 390 px phone at pixel ratio 3."""
    chromedriver = shutil.which("chromedriver")
    if CHROMIUM is None or chromedriver is None:
        if os.environ.get("CI"):
            pytest.fail("chromium or chromedriver is not installed (apt-get install -y chromium chromium-driver)")
        pytest.skip("chromium or chromedriver is not installed")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    if phone:
        # Touch emulation off: with it, chromedriver's clicks land beside the element (a link below a button).
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": 390, "height": 844,
                                                                              "pixelRatio": 3.0, "touch": False}})
    else:
        options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()
