"""The web office in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
through Selenium): log in, read a store's figures for a period and find ``fleetctl report``'s
numbers, play a negative contact's clips, a manager's scope, log out. Screenshots of the main
pages go to ``build/screenshots`` (or ``$OFFICE_SCREENSHOTS``)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.fleet.office.conftest import NOW_S, PASSWORD, Client

SHOTS = Path(os.environ.get("OFFICE_SCREENSHOTS", Path(__file__).resolve().parents[3] / "build" / "screenshots"))
TZ = "Europe/Riga"

pytestmark = pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                reason="needs Debian's chromium and chromium-driver (tools/install.sh installs them)")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--mute-audio",
              "--autoplay-policy=no-user-gesture-required", "--window-size=1280,1000"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=webdriver.ChromeService(shutil.which("chromedriver")), options=opts)
    d.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield d
    d.quit()


def shot(d, name: str) -> None:
    d.save_screenshot(str(SHOTS / f"{name}.png"))


def login(d, url: str, name: str) -> None:
    from selenium.webdriver.common.by import By
    d.delete_all_cookies()
    d.get(url + "/")
    assert "/login" in d.current_url                    # no session: sent to the login page
    d.find_element(By.ID, "name").send_keys(name)
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    shot(d, "login")
    d.find_element(By.ID, "login").click()
    wait_for(lambda: d.find_elements(By.ID, "who"))
    assert d.find_element(By.ID, "who").text.startswith(name)


def wait_for(cond, timeout: float = 20):
    """Until ``cond()`` is true; an element of the page being replaced (a form submitted, a
    link followed) counts as not yet."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = cond()
        except (StaleElementReferenceException, NoSuchElementException):
            r = None
        if r:
            return r
        time.sleep(0.1)
    raise AssertionError("timed out")


def report(db: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "fleet.cli", "report", "--db", db, "--tz", TZ, "--by", "none",
                          "--json", *args], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)["overall"]


def test_a_manager_reads_the_report_figures_listens_and_logs_out(server, fleet, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    d = browser
    login(d, server.url, "nora")
    shot(d, "overview-today")
    # a period and a store, picked in the page's own form
    today = datetime.fromtimestamp(NOW_S, ZoneInfo(TZ)).date()
    first, last = today - timedelta(days=20), today - timedelta(days=6)
    Select(d.find_element(By.ID, "period")).select_by_value("custom")
    for field, day in (("from", first), ("to", last)):
        el = d.find_element(By.ID, field)
        d.execute_script("arguments[0].value = arguments[1]", el, day.isoformat())
    Select(d.find_element(By.ID, "scope")).select_by_value("store:Riga Centre")
    d.find_element(By.ID, "apply").click()
    wait_for(lambda: "store Riga Centre" in d.find_element(By.ID, "scope-label").text)
    shot(d, "overview-store")
    shown = {el.get_attribute("data-metric"): json.loads(el.get_attribute("data-value"))
             for el in d.find_elements(By.CSS_SELECTOR, "[data-metric]")}
    want = report(fleet.db, "--store", "Riga Centre", "--from", first.isoformat(), "--to",
                  (last + timedelta(days=1)).isoformat())
    assert want["contacts"] > 100
    assert {k: shown[k] for k in shown} == {k: want[k] for k in shown}
    assert len(shown) >= 20
    text = d.find_element(By.ID, "m-csi").text
    assert text == f"{want['csi'] * 100:.1f} %"

    # the negative contacts of the week → one with its clips
    d.get(server.url + "/negatives")
    shot(d, "negatives")
    contact, (device, clip, seconds) = next((c, a) for c, a in fleet.audio.items() if a[0] == "box-n1")
    d.get(f"{server.url}/negatives?period=custom&from=2026-07-31&to={today}&reviewed=")
    link = d.find_element(By.CSS_SELECTOR, f'a[href="/contacts/{device}/{contact}"]')
    link.click()
    wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "audio.clip"))
    audio = d.find_element(By.CSS_SELECTOR, "audio.clip")
    d.execute_script("arguments[0].play()", audio)
    state = wait_for(lambda: (lambda s: s if s[0] >= 3 else None)(
        d.execute_script("const a = arguments[0]; return [a.readyState, a.duration, a.error && a.error.code]",
                         audio)), timeout=30)
    assert state[2] is None
    assert abs(state[1] - seconds) < 0.1, (state, seconds)
    assert d.execute_script("return arguments[0].currentTime", audio) >= 0
    shot(d, "contact")
    # its rating press's track is there too, and plays
    press = d.find_elements(By.CSS_SELECTOR, "audio.clip")[1]
    assert fleet.press[contact][1] in press.get_attribute("src")
    assert "Press track (rating)" in d.page_source
    state = wait_for(lambda: (lambda s: s if s[0] >= 1 else None)(
        d.execute_script("const a = arguments[0]; return [a.readyState, a.duration]", press)), timeout=30)
    assert abs(state[1] - 45.0) < 0.1
    # the review mark
    d.find_element(By.ID, "comment").send_keys("greeting missing")
    d.find_element(By.ID, "mark-reviewed").click()
    wait_for(lambda: d.find_elements(By.ID, "reviewed"))
    assert "nora" in d.find_element(By.ID, "reviewed").text and "greeting missing" in d.page_source

    # the WAV track of the other contact plays too
    contact2, (device2, clip2, seconds2) = [(c, a) for c, a in fleet.audio.items() if a[0] == "box-n1"][1]
    d.get(f"{server.url}/contacts/{device2}/{contact2}")
    audio = d.find_element(By.CSS_SELECTOR, "audio.clip")
    state = wait_for(lambda: (lambda s: s if s[0] >= 1 else None)(
        d.execute_script("const a = arguments[0]; return [a.readyState, a.duration]", audio)), timeout=30)
    assert abs(state[1] - seconds2) < 0.1

    # nothing of the south anywhere
    d.get(server.url + "/?period=month")
    options = [o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#scope option")]
    assert "store:Riga Centre" in options and "store:Tartu" in options
    assert not any("south" in o or "Vilnius" in o or "box-s1" in o for o in options)
    assert "box-s1" not in d.page_source and "Vilnius" not in d.page_source
    d.get(server.url + "/devices")
    shot(d, "devices")
    assert "box-n1" in d.page_source and "box-s1" not in d.page_source
    d.get(server.url + "/contacts?period=month")
    shot(d, "contacts")
    assert "box-n" in d.page_source and "box-s1" not in d.page_source
    south = next(a for a in fleet.audio.values() if a[0] == "box-s1")
    d.get(f"{server.url}/clips/{south[0]}/{south[1]}")
    assert "Not in your scope" in d.page_source
    d.get(server.url + "/?scope=store:Vilnius")
    assert "Not in your scope" in d.page_source

    # log out: the session is gone
    d.get(server.url + "/")
    d.find_element(By.ID, "logout").click()
    wait_for(lambda: "/login" in d.current_url)
    d.get(server.url + "/devices")
    assert "/login" in d.current_url
    # and the south's clip is refused to nora by URL, with the status code (403)
    c = Client(server.port)
    assert c.login("nora") == 303
    assert c.get(f"/clips/{south[0]}/{south[1]}")[0] == 403
    assert c.get(f"/clips/{device}/{clip}")[0] == 200


def test_the_overview_on_a_phone(server, browser):
    d = browser
    login(d, server.url, "root")
    d.set_window_size(390, 844)
    try:
        d.get(server.url + "/?period=month")
        shot(d, "overview-phone")
        width = d.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400                          # no sideways scrolling of the page
    finally:
        d.set_window_size(1280, 1000)
