"""Wallet cards: an Apple Wallet pass that openssl verifies and whose barcodes a scanner reads, the PassKit
web service driven by a real HTTP client, the update and its push when processing changes the figures,
and a Google Wallet save link whose JWT verifies (docs/holders.md, "Wallet cards")."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from support.backoffice import DAY, NOW, World
from support.holders import add_holder
from support.wallet import PASS_TYPE, PASSPHRASE, make_pki, wallet_settings

from processing.holders.delivery import Deliverer
from processing.holders.wallet import barcode_images, google_save_link, issue_pass, pass_content
from processing.holders.web import holder_app
from processing.synthetic import SynthCard
from purse.settings import IssuerSettings, NotifySettings

ISSUER = IssuerSettings(name="Coffee House")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _card(w: World) -> SynthCard:
    w.merchant(42)
    t = w.terminal(7, 42)
    card = w.card(1, load=50_000)
    w.register_card(card)
    add_holder(w.engine, card.number)
    t.purchase(card, 1_250, NOW + 10, program_id=5, earned=12)
    w.process(t.close(w.tmp / "b1.spb"))
    return card


@pytest.fixture
def passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTPURSE_PASS_KEY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("SMARTPURSE_GOOGLE_KEY_PASSPHRASE", PASSPHRASE)


def test_a_pkpass_verifies_with_openssl_and_its_barcodes_scan(processing_db: World, pki: dict[str, Path],
                                                              passphrase: None, tmp_path: Path) -> None:
    w = processing_db
    number = _card(w).number
    with w.engine.begin() as conn:
        data = issue_pass(conn, number, "Anna", wallet_settings(pki), ISSUER, "https://cards.example/notify")
    files = zipfile.ZipFile(io.BytesIO(data))
    assert set(files.namelist()) == {"pass.json", "icon.png", "icon@2x.png", "logo.png", "manifest.json",
                                     "signature"}
    manifest = json.loads(files.read("manifest.json"))
    assert all(hashlib.sha1(files.read(name)).hexdigest() == digest for name, digest in manifest.items())  # noqa: S324
    for name in ("manifest.json", "signature"):
        (tmp_path / name).write_bytes(files.read(name))
    verify = ["openssl", "smime", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "signature"),
              "-content", str(tmp_path / "manifest.json"), "-CAfile", str(pki["root"]), "-purpose", "any",
              "-out", "/dev/null"]
    verified = subprocess.run(verify, capture_output=True, text=True)
    assert verified.returncode == 0 and "Verification successful" in verified.stderr, verified.stderr
    (tmp_path / "manifest.json").write_bytes(files.read("manifest.json").replace(b"1", b"2", 1))
    assert subprocess.run(verify, capture_output=True).returncode != 0  # a changed manifest fails

    card = json.loads(files.read("pass.json"))
    assert (card["serialNumber"], card["passTypeIdentifier"], card["webServiceURL"]) == (
        number, PASS_TYPE, "https://cards.example/notify/wallet")
    assert [b["format"] for b in card["barcodes"]] == ["PKBarcodeFormatQR", "PKBarcodeFormatCode128"]
    assert {b["message"] for b in card["barcodes"]} == {number} and len(card["authenticationToken"]) >= 16
    fields = {f["key"]: f for f in card["storeCard"]["primaryFields"] + card["storeCard"]["secondaryFields"]}
    assert (fields["balance"]["value"], fields["balance"]["currencyCode"], fields["points"]["value"]) == (
        487.5, "RUB", 12)
    assert card["storeCard"]["auxiliaryFields"][0]["key"] == "as_of"
    assert [loc["relevantText"] for loc in card["locations"]] == ["Coffee House on Tverskaya", "Coffee House Arbat"]

    for name, image in barcode_images(card["barcodes"][0]["message"]).items():
        (tmp_path / name).write_bytes(image)
        scanned = subprocess.run(["zbarimg", "--quiet", "--raw", str(tmp_path / name)], capture_output=True,
                                 text=True)
        assert scanned.stdout.strip() == number, (name, scanned.stderr)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def push_server() -> Iterator[list[tuple[str, str]]]:
    """A local HTTP server standing in for the push gateway: it keeps (path, apns-topic) of each push."""
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.path, self.headers.get("apns-topic", "")))
            self.send_response(200)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen.append(("url", f"http://127.0.0.1:{server.server_address[1]}"))
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def _call(url: str, method: str = "GET", token: str | None = None, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=body, method=method, headers={
        **({"Authorization": f"ApplePass {token}"} if token else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_the_passkit_web_service_registers_updates_and_pushes(processing_db: World, pki: dict[str, Path],
                                                              passphrase: None,
                                                              push_server: list[tuple[str, str]]) -> None:
    w = processing_db
    card = _card(w)
    number = card.number
    push_url = push_server.pop(0)[1]
    wallet = wallet_settings(pki, push_url=push_url)
    with w.engine.begin() as conn:
        token = json.loads(zipfile.ZipFile(io.BytesIO(issue_pass(conn, number, "Anna", wallet, ISSUER, "x")))
                           .read("pass.json"))["authenticationToken"]
    app = make_server("127.0.0.1", 0, holder_app(w.engine, wallet=wallet, issuer=ISSUER, public_url="x"),
                      handler_class=_Quiet)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{app.server_address[1]}/wallet/v1"
    register = f"{base}/devices/iphone-1/registrations/{PASS_TYPE}/{number}"
    try:
        assert _call(register, "POST", token, b'{"pushToken": "push-abc"}')[0] == 201
        assert _call(register, "POST", token, b'{"pushToken": "push-abc"}')[0] == 200
        assert _call(register, "POST", "not-the-token-at-all", b'{"pushToken": "x"}')[0] == 401
        assert _call(register, "POST", None, b'{"pushToken": "x"}')[0] == 401
        status, body, _ = _call(f"{base}/devices/iphone-1/registrations/{PASS_TYPE}?passesUpdatedSince=0")
        assert status == 200 and json.loads(body)["serialNumbers"] == [number]
        first_tag = json.loads(body)["lastUpdated"]
        status, body, headers = _call(f"{base}/passes/{PASS_TYPE}/{number}", token=token)
        assert status == 200 and headers["Content-Type"] == "application/vnd.apple.pkpass"
        fetched = json.loads(zipfile.ZipFile(io.BytesIO(body)).read("pass.json"))
        assert fetched["authenticationToken"] == token  # the device keeps its token
        assert _call(f"{base}/passes/{PASS_TYPE}/{number}", token=token,
                     headers={"If-Modified-Since": headers["Last-Modified"]})[0] == 304
        assert _call(f"{base}/passes/{PASS_TYPE}/{number}", token="wrong-token-wrong-token")[0] == 401

        w.now += DAY
        w.load(card, 10_000, NOW + DAY)  # a load: the pass's balance changes, the device hears of it
        w.ingest_loads()
        done = Deliverer(w.engine, NotifySettings(quiet_hours=""), ISSUER, clock=lambda: w.now + 60,
                         wallet=wallet).run()
        assert (done.passes_updated, done.pushes_sent) == (1, 1)
        assert push_server == [("/3/device/push-abc", PASS_TYPE)]
        status, body, _ = _call(f"{base}/devices/iphone-1/registrations/{PASS_TYPE}?passesUpdatedSince={first_tag}")
        assert status == 200 and json.loads(body)["serialNumbers"] == [number]
        status, body, _ = _call(f"{base}/passes/{PASS_TYPE}/{number}", token=token)
        balance = json.loads(zipfile.ZipFile(io.BytesIO(body)).read("pass.json"))["storeCard"]["primaryFields"][0]
        assert status == 200 and balance["value"] == 587.5
        assert _call(register, "DELETE", token)[0] == 200
        assert _call(f"{base}/devices/iphone-1/registrations/{PASS_TYPE}")[0] == 204
        assert _call(f"{base}/log", "POST", None, b'{"logs": ["ok"]}')[0] == 200
    finally:
        app.shutdown()
        app.server_close()


def test_a_google_wallet_save_link_carries_a_verifiable_loyalty_object(processing_db: World, pki: dict[str, Path],
                                                                       passphrase: None) -> None:
    import jwt

    w = processing_db
    number = _card(w).number
    with w.engine.connect() as conn:
        link = google_save_link(pass_content(conn, number, "Anna"), wallet_settings(pki), ISSUER)
    assert link.startswith("https://pay.google.com/gp/v/save/")
    claims = jwt.decode(link.rsplit("/", 1)[1], pki["google_public"].read_bytes(), algorithms=["RS256"],
                        audience="google")
    assert (claims["typ"], claims["iss"]) == ("savetowallet", "wallet@coffee.iam.example")
    loyalty = claims["payload"]["loyaltyObjects"][0]
    assert (loyalty["id"], loyalty["barcode"]["value"], loyalty["loyaltyPoints"]["balance"]["int"]) == (
        f"3388000000022.{number}", number, 12)
    assert loyalty["secondaryLoyaltyPoints"]["balance"]["money"] == {"micros": 487_500_000, "currencyCode": "RUB"}
