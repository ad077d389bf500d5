"""A headless Chromium driven by selenium: the viewer's browser test and its README screenshot.

Development only (selenium is a dev dependency; `make setup` installs Debian's chromium and
chromium-driver when missing). `missing()` says why no browser can run, so callers can skip.
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

# The network is closed here: without the background-networking flags Chromium keeps trying
# (and failing) to reach Google's services; a fresh profile keeps runs independent.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver")


def _which(names) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


def missing() -> str | None:
    """Why no headless browser can run here, or None when one can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is a dev dependency: make setup)"
    if _which(BROWSERS) is None:
        return "no chromium on PATH (make setup installs Debian's chromium with apt)"
    if _which(DRIVERS) is None:
        return "no chromedriver on PATH (make setup installs Debian's chromium-driver with apt)"
    return None


@contextmanager
def chromium(width: int = 1280, height: int = 800):
    """A selenium driver for a fresh headless Chromium whose page area is width x height."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _which(BROWSERS)
    with tempfile.TemporaryDirectory(prefix="archc-chromium-") as profile:
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for get_log
        driver = webdriver.Chrome(options=options, service=Service(executable_path=_which(DRIVERS)))
        try:
            # the page's own area, exactly (a window's size includes what a browser draws around it)
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            yield driver
        finally:
            driver.quit()


def set_dark(driver, dark: bool) -> None:
    """Emulate the system's colour-scheme preference."""
    value = "dark" if dark else "light"
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": value}]})


def drawn(driver) -> int:
    """How many times the page has laid its diagram out (0 before the first)."""
    return int(driver.execute_script("return Number(document.body.dataset.drawn || 0)"))


def wait_drawn(driver, more_than: int = 0, timeout: float = 120) -> None:
    """Wait until the page has drawn more than `more_than` times, or shows a layout error."""
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d):
        error = d.execute_script("var s = document.getElementById('status'); return s && s.className === 'error' ? s.textContent : ''")
        if error:
            raise AssertionError(f"the page failed: {error}")
        return drawn(d) > more_than

    WebDriverWait(driver, timeout).until(done)


def open_page(driver, path: str | Path) -> None:
    driver.get(Path(path).resolve().as_uri())
    wait_drawn(driver)


def screenshot(html: str | Path, png: str | Path, script: str = "", width: int = 1280, height: int = 800) -> None:
    """A PNG of the page at width x height after running `script` in it (written atomically)."""
    from runtime.files import write_bytes

    with chromium(width, height) as driver:
        open_page(driver, html)
        if script:
            driver.execute_script(script)
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            raise RuntimeError(f"{html}: the page logged errors: {errors}")
        write_bytes(str(png), driver.get_screenshot_as_png())
