"""The holder's page as a holder uses it: Debian's Chromium on a 390 px phone against ``smartpurse portal serve``
on the demo's home, the login code read from the mailbox the local SMTP server writes; the lost card then on
the hotlist ``smartpurse hotlist export`` signs. Screenshots at phone and desktop width go to
``$SMARTPURSE_SCREENSHOTS`` when it is set (docs/portal.md shows them)."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import chrome

from personalization.keyfiles import load_issuer
from purse.home import Home
from purse.hotlist import load_hotlist
from purse.signing import public_bytes

SMALL = ["--cards", "12", "--purchases", "160", "--terminals", "3", "--days", "5"]
PASSPHRASE = "demo"

pytestmark = pytest.mark.slow


def smartpurse(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMARTPURSE_PASSPHRASE": PASSPHRASE}
    return subprocess.run([sys.executable, "-c", "import cli; cli.main()", *args], capture_output=True, text=True,
                          timeout=300, env=env, **kw)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's home: cards, holders (one in five cards), processed batches."""
    out = tmp_path_factory.mktemp("portal-demo") / "demo"
    done = smartpurse("--json", "demo", "--out", str(out), *SMALL)
    assert done.returncode == 0, done.stderr
    return out / "home"


@pytest.fixture
def portal(demo: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``smartpurse portal serve`` on the demo's home, on a free port, codes delivered into ``tmp_path/codes``."""
    codes = tmp_path / "codes"
    server = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "--home", str(demo), "--json",
                               "portal", "serve", "--port", "0", "--local-delivery", str(codes)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        said = ""
        while not said.endswith("}\n"):  # the pretty-printed JSON of its first message: where it listens
            line = server.stdout.readline()
            assert line, server.stderr.read() if server.stderr else ""
            said += line
        yield json.loads(said)["url"], codes
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode == 0  # SIGTERM stops it cleanly


def holder_card(home: Path) -> tuple[str, str, int, str]:
    """A card in use whose holder has an e-mail address: number, address, shadow balance, language."""
    with sqlite3.connect(home / "smartpurse.db") as db:
        row = db.execute("SELECT c.number, h.email, a.balance, h.language FROM cards c JOIN holders h ON "
                         "h.id = c.holder_id JOIN card_accounts a ON a.card_number = c.number WHERE "
                         "c.state = 'issued' AND h.email IS NOT NULL ORDER BY c.number LIMIT 1").fetchone()
    assert row is not None
    return row[0], row[1], int(row[2]), row[3] or "en"


def code_for(address: str, codes: Path, timeout: float = 20.0) -> str:
    """The six digits of the newest e-mail to ``address`` in the local mailbox."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (codes / "mailbox.mbox").exists():
            for raw in reversed(list(mailbox.mbox(codes / "mailbox.mbox"))):
                msg = email.message_from_bytes(raw.as_bytes(), policy=email.policy.default)
                if msg["To"] == address:
                    body = msg.get_body(("plain",))
                    assert body is not None
                    found = re.search(r"\b(\d{6})\b", body.get_content())
                    assert found is not None
                    assert "List-Unsubscribe" not in msg  # a code the holder asked for: nothing to unsubscribe
                    return found.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no code for {address} within {timeout} s")


LAYOUT_PROBE = """
let smallest = 1000;
for (const el of document.querySelectorAll("body *")) {
  if (!el.getClientRects().length) continue;
  if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
  smallest = Math.min(smallest, parseFloat(getComputedStyle(el).fontSize));
}
return {width: window.innerWidth, scroll: document.documentElement.scrollWidth, smallest,
        resources: performance.getEntriesByType("resource").map((r) => r.name)};
"""


def readable(driver: Any, url: str) -> None:
    """Nothing wider than the screen, no text under 12 px, nothing fetched from anywhere but the server."""
    seen = driver.execute_script(LAYOUT_PROBE)
    assert seen["scroll"] <= seen["width"], seen
    assert seen["smallest"] >= 12, seen
    assert all(r.startswith(url) for r in seen["resources"]), seen


def find(driver: Any, element_id: str) -> Any:
    """The element once the page that has it is there (a click's navigation may still be loading)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    return WebDriverWait(driver, 20).until(expected_conditions.presence_of_element_located((By.ID, element_id)),
                                           f"no #{element_id} on {driver.current_url}")


def shoot(driver: Any, name: str) -> None:
    folder = os.environ.get("SMARTPURSE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"portal-{name}.png"))


def test_a_holder_logs_in_with_a_code_sees_the_balance_and_reports_the_card_lost(
        demo: Path, portal: tuple[str, Path], tmp_path: Path) -> None:
    url, codes = portal
    number, address, balance, _ = holder_card(demo)
    from processing.presentation import Presentation

    shown_balance = Presentation("en").money(balance)
    with chrome(tmp_path / "phone", phone=True) as driver:
        from selenium.webdriver.common.by import By

        driver.get(f"{url}/login")
        assert not driver.find_elements(By.ID, "insecure")  # localhost keeps a Secure cookie
        readable(driver, url)
        shoot(driver, "login-phone")
        driver.find_element(By.ID, "identifier").send_keys(f"{number[:4]} {number[4:8]} {number[8:12]} {number[12:]}")
        driver.find_element(By.ID, "send-code").click()
        assert "a code is on its way" in find(driver, "note").text
        find(driver, "code").send_keys(code_for(address, codes))
        driver.find_element(By.ID, "log-in").click()
        find(driver, f"card-{number}")
        assert driver.current_url == f"{url}/cards"
        cookie = driver.get_cookie("__Host-smartpurse")
        assert cookie is not None and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        card = driver.find_element(By.ID, f"card-{number}")
        assert shown_balance in card.text
        readable(driver, url)
        shoot(driver, "cards-phone")

        driver.find_element(By.LINK_TEXT, f"•••• {number[-4:]}").click()
        driver.find_element(By.ID, "report-lost").click()
        assert shown_balance in find(driver, "value").text  # what moves to the new card
        readable(driver, url)
        driver.find_element(By.CSS_SELECTOR, "input[value=stolen]").click()
        driver.find_element(By.ID, "confirm-lost").click()
        assert "blocked" in find(driver, "message").text
        driver.get(f"{url}/cards/{number}")
        assert driver.find_element(By.ID, "state").text == "Blocked"
        assert "Replacement requested" in driver.find_element(By.ID, "replacement").text

        driver.get(f"{url}/language/ru?next=/cards/{number}/statement")
        assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Выписка")
        readable(driver, url)
        shoot(driver, "statement-phone-ru")

    hotlist = tmp_path / "hotlist.signed"
    exported = smartpurse("--home", str(demo), "--json", "hotlist", "export", "--out", str(hotlist))
    assert exported.returncode == 0, exported.stderr
    issuer = load_issuer(Home.open(str(demo)), PASSPHRASE)
    assert number in load_hotlist(hotlist, public_bytes(issuer.signing_key.public_key()))

    shown = smartpurse("--home", str(demo), "--json", "cards", "show", number)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["state"] == "blocked" and "stolen" in data["block_reason"]
    assert data["requests"]["replacement"]["source"] == "self-service"

    open_requests = smartpurse("--home", str(demo), "--json", "cards", "requests")
    assert [(r["card_number"], r["kind"]) for r in json.loads(open_requests.stdout)] == [(number, "replacement")]

    logged = smartpurse("--home", str(demo), "--json", "portal", "log", "--event", "card-lost")
    assert logged.returncode == 0 and json.loads(logged.stdout)[0]["detail"].endswith("stolen")


def test_the_pages_read_at_desktop_width_too(demo: Path, portal: tuple[str, Path], tmp_path: Path) -> None:
    url, codes = portal
    with sqlite3.connect(demo / "smartpurse.db") as db:
        number, address = db.execute(
            "SELECT c.number, h.email FROM cards c JOIN holders h ON h.id = c.holder_id WHERE c.state = 'issued' "
            "AND h.email IS NOT NULL ORDER BY c.number DESC LIMIT 1").fetchone()
    with chrome(tmp_path / "desktop", width=1280, height=900) as driver:
        from selenium.webdriver.common.by import By

        driver.get(f"{url}/login")
        shoot(driver, "login-desktop")
        driver.find_element(By.ID, "identifier").send_keys(number)
        driver.find_element(By.ID, "send-code").click()
        find(driver, "code").send_keys(code_for(address, codes))
        driver.find_element(By.ID, "log-in").click()
        find(driver, f"card-{number}")
        driver.get(f"{url}/cards/{number}")
        readable(driver, url)
        shoot(driver, "card-desktop")
        driver.get(f"{url}/cards/{number}/statement")
        rows = driver.find_elements(By.CSS_SELECTOR, "table.statement tbody tr")
        with sqlite3.connect(demo / "smartpurse.db") as db:
            stored = db.execute("SELECT count(*) FROM records WHERE card_number = ?", (number,)).fetchone()[0]
        assert len(rows) == stored > 0
        shoot(driver, "statement-desktop")



def test_serve_warns_when_no_code_could_be_sent(demo: Path) -> None:
    """The demo's home has no [notify] channels: without --local-delivery, serve says so at once."""
    server = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "--home", str(demo), "portal",
                               "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None and server.stdout is not None
        assert "no login code can be sent" in server.stderr.readline()
        assert server.stdout.readline().startswith("the holders' page at http://localhost:")
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
