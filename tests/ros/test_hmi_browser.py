"""The web HMI in a real browser (headless Chromium driven through Debian's chromium-driver) against the real nodes:
an operator logs in, resets, starts 3 parts, holds and unholds, acknowledges an injected fault, watches the counter
reach 3; screenshots of the live page (tablet and line-screen sizes) and of the shift report are saved and checked."""

from __future__ import annotations

import io
import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from cobot_cell import waiting
from cobot_cell.plant.users import Role, UserStore
from cobot_cell.supervisor.log import ProductionLog

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
SHOTS = Path(os.environ.get("HMI_SCREENSHOTS", "")) if os.environ.get("HMI_SCREENSHOTS") else None

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="the HMI browser test needs Debian's chromium and chromium-driver (scripts/bootstrap.sh installs them "
    "with apt when run as root)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, what: str, timeout: float, logs=lambda: "") -> None:
    """The shared wait, with the page's errors counting as not ready yet (reloading, server starting) and the
    node logs in the failure."""
    waiting.wait_until(predicate, timeout, what, poll=0.05, ignore=(Exception,), detail=lambda: "\n" + logs())


@pytest.fixture
def rig(cell_rig, tmp_path):
    """The demo cell at 20x, 3 parts, with its HMI on a free loopback port and an operator in the user store."""
    users = UserStore(tmp_path / "users.json")
    users.add("otto", "otto-pw-1", Role.OPERATOR)
    port = free_port()
    r = cell_rig(parts=3, hmi=f"127.0.0.1:{port}", env={"COBOT_CELL_USERS": str(users.path)})
    r.url = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: urllib.request.urlopen(f"{r.url}/api/live", timeout=2).status == 200, "the HMI to serve", 60, r.logs
    )
    yield r
    r.close()  # the cell_rig fixture checks that every node ended cleanly


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    opts.add_argument("--window-size=1280,800")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def text(driver, css: str) -> str:
    """An element's text, read in one script call (the page re-renders parts of itself at every live event)."""
    return driver.execute_script("return document.querySelector(arguments[0]).innerText.trim()", css)


def click(driver, css: str) -> None:
    """Click an enabled element (found again if the page re-rendered it in between)."""
    from selenium.webdriver.common.by import By

    def clicked() -> bool:
        el = driver.find_element(By.CSS_SELECTOR, css)
        if not el.is_enabled():
            return False
        el.click()
        return True

    wait_until(clicked, f"{css} to be enabled and clicked", 30)


def state(driver) -> str:
    return text(driver, "#state")


def marks(driver, css: str) -> int:
    """The data marks a chart drew (its svg's data-marks), read in one script call."""
    return int(
        driver.execute_script(
            "return document.querySelector(arguments[0] + ' svg.chart').getAttribute('data-marks')", css
        )
    )


def colours(png: bytes) -> int:
    """How many distinct colours an image has (a blank chart has one or two)."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return len(img.getcolors(maxcolors=1 << 20) or [])


def viewport(driver, size: tuple[int, int]) -> None:
    """The page's viewport exactly `size` CSS pixels (a tablet, a line screen), whatever the window around it."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False},
    )


def shot(driver, path: Path, size: tuple[int, int]) -> bytes:
    viewport(driver, size)
    wait_until(lambda: driver.execute_script("return document.readyState") == "complete", "the page", 10)
    png = driver.get_screenshot_as_png()
    path.write_bytes(png)
    if SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / path.name).write_bytes(png)
    return png


def test_a_shift_through_the_hmi(rig, browser, tmp_path):
    from selenium.webdriver.common.by import By

    d = browser
    viewport(d, (1280, 800))
    d.get(rig.url + "/")
    wait_until(lambda: state(d) == "Stopped", "the banner to show Stopped", 60, rig.logs)
    # not logged in: the command buttons are there but disabled
    assert not d.find_element(By.CSS_SELECTOR, "button[data-command=reset]").is_enabled()

    d.find_element(By.ID, "user").send_keys("otto")
    d.find_element(By.ID, "password").send_keys("otto-pw-1")
    d.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait_until(lambda: "otto (operator)" in text(d, "#whoami"), "the login", 30, rig.logs)

    click(d, "button[data-command=reset]")
    wait_until(lambda: state(d) == "Idle", "Idle", 60, rig.logs)
    assert text(d, "#parts-target") == "3"
    click(d, "button[data-command=start]")
    wait_until(lambda: state(d) == "Execute", "Execute", 60, rig.logs)
    assert d.find_element(By.ID, "banner").value_of_css_property("background-color") == "rgba(27, 138, 47, 1)"

    click(d, "button[data-command=hold]")
    wait_until(lambda: state(d) == "Held", "Held", 60, rig.logs)
    # a command the state does not accept is refused by the cell, its PackML reason shown
    resp = d.execute_async_script(
        "const done = arguments[0];"
        "fetch('/api/command', {method: 'POST', headers: {'Content-Type': 'application/json', "
        "'X-CSRF-Token': hmi.csrf}, body: JSON.stringify({command: 'start'})})"
        ".then(r => r.json().then(j => done([r.status, j.message])));"
    )
    assert resp == [409, "cannot start in state Held: allowed commands are stop, unhold, abort"]
    click(d, "button[data-command=unhold]")
    wait_until(lambda: state(d) == "Execute", "Execute after unhold", 60, rig.logs)

    rig.inject("picker", "protective_stop")
    wait_until(lambda: "PROTECTIVE_STOP" in text(d, "#faults"), "the fault on the page", 60, rig.logs)
    wait_until(lambda: state(d) == "Held", "Held by the protective stop", 60, rig.logs)
    click(d, "#faults button.ack")
    wait_until(lambda: "(acknowledged)" in text(d, "#faults"), "the fault acknowledged", 30, rig.logs)
    assert text(d, "#message").startswith("acknowledged fault")
    shot(d, tmp_path / "hmi-live-fault-1280x800.png", (1280, 800))
    rig.inject("picker", "")

    def unheld() -> bool:
        if state(d) == "Held":
            click(d, "button[data-command=unhold]")
            time.sleep(0.3)  # pacing of retries while the driver recovers, not synchronisation
        return state(d) in ("Execute", "Completing", "Complete")

    wait_until(unheld, "unhold accepted once the driver recovered", 60, rig.logs)
    wait_until(lambda: text(d, "#parts-done") == "3" and state(d) == "Complete", "3 parts and Complete", 120, rig.logs)
    wait_until(lambda: marks(d, "#trend") == 3, "3 parts on the cycle-time trend", 30, rig.logs)
    assert marks(d, "#gantt") >= 9 and marks(d, "#oee") == 4
    assert "bottleneck bound" in text(d, "#trend")
    assert text(d, "#faults") == "none"

    for size in ((1280, 800), (1920, 1080)):
        png = shot(d, tmp_path / f"hmi-live-{size[0]}x{size[1]}.png", size)
        assert colours(png) > 50
        assert d.execute_script("return document.documentElement.scrollWidth") <= size[0], "no sideways scrolling"
        assert d.execute_script("return document.documentElement.scrollHeight") <= size[1], "one screen, no scrolling"
        banner = d.find_element(By.ID, "banner")
        assert banner.size["width"] >= size[0] - 20 and banner.size["height"] >= 70
        assert colours(d.find_element(By.ID, "gantt").screenshot_as_png) > 8
        assert "Complete" in banner.text and "3" in text(d, "#parts-done")

    d.get(rig.url + "/report")
    wait_until(lambda: text(d, "#report-parts") == "3", "the report's 3 parts", 30, rig.logs)
    for chart in ("#report-trend", "#report-oee", "#report-downtime", "#report-pareto"):
        assert marks(d, chart) > 0, chart
    assert "PROTECTIVE_STOP" in text(d, "#pareto")
    assert len(d.find_elements(By.CSS_SELECTOR, "#cycles tr")) == 4
    png = shot(d, tmp_path / "hmi-report-1280x800.png", (1280, 800))
    assert colours(png) > 50
    shot(d, tmp_path / "hmi-report-1920x1080.png", (1920, 1080))
    csv_text = urllib.request.urlopen(rig.url + "/report.csv", timeout=10).read().decode()
    assert len(csv_text.strip().splitlines()) == 4

    # every command the operator sent is in the production log: user (and where from), source, time, outcome
    def audited() -> list:
        with ProductionLog(rig.db) as log:
            return [(a.command, a.outcome) for a in log.audit("demo") if a.user.startswith("otto@hmi 127.0.0.1:")]

    wanted = [
        ("reset", "accepted"),
        ("start", "accepted"),
        ("hold", "accepted"),
        ("start", "refused"),
        ("unhold", "accepted"),
        ("acknowledge", "accepted"),
    ]
    wait_until(lambda: audited()[:6] == wanted, "the commands in the production log's audit", 30, rig.logs)
    with ProductionLog(rig.db) as log:
        records = [a for a in log.audit("demo") if a.user.startswith("otto@hmi")]
    assert {a.source for a in records} == {"local"} and all(a.time > 1.7e9 for a in records)
    png = urllib.request.urlopen(rig.url + "/report.png", timeout=60).read()
    assert png.startswith(b"\x89PNG") and colours(png) > 50
    (tmp_path / "hmi-report-export.png").write_bytes(png)
    if SHOTS:
        (SHOTS / "hmi-report-export.png").write_bytes(png)
