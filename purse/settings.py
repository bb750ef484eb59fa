"""``smartpurse.toml``, read once into typed settings: every key known, every default in one place.

A home works with no configuration file at all (the defaults below are the embedded
ones). A file may override any of them; a key this module does not know, or a value of
the wrong type, is one ``UserError`` line naming it, so a typo never silently falls
back to a default (``[isuer] iin = …`` would otherwise issue cards under the wrong IIN).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from purse.errors import UserError


@dataclass(frozen=True)
class IssuerSettings:
    """Who issues the cards and what a new card gets."""

    iin: str = "627700"  # issuer identification number, the first digits of every card number
    issuer_id: int = 1
    system_identifier: str = "SMARTPURSE"  # AN10922 diversification input; at most 16 bytes are used
    name: str = ""  # shown on the dashboard; the system identifier when empty
    currency: int = 643  # ISO 4217 numeric (643 = RUB); amounts are in its minor unit
    currency_exponent: int = 2
    max_balance: int = 1_500_000  # minor units: 15,000.00
    card_deposit: int = 0  # minor units taken per card at issue and refunded at its return (750: 7.50); 0: none
    card_validity_years: int = 5
    pin_length: int = 4
    phone_region: str = "RU"  # ISO 3166 country a holder's phone number without + belongs to
    locale: str = "en"  # reports and text output for people: "en", or "ru" (Russian labels, ; and decimal comma)
    # The payer of merchant payouts (`smartpurse merchants payouts`): checked when a payout file is written.
    legal_name: str = ""
    tax_number: str = ""  # INN
    bank_name: str = ""
    bank_bic: str = ""  # a Russian BIC, or the SWIFT BIC of the IBAN's bank
    bank_account: str = ""  # the issuer's 20-digit Russian settlement account
    iban: str = ""  # or its IBAN (pain.001)

    @property
    def display_name(self) -> str:
        return self.name or self.system_identifier


@dataclass(frozen=True)
class MerchantSettings:
    """What a merchant registered with its first terminal starts with."""

    default_fee_bps: int = 100  # settlement fee in basis points (1.00 %)


@dataclass(frozen=True)
class NotifySettings:
    """How the issuer reaches card holders (docs/holders.md): the SMTP server, the SMS gateway, the rules.

    Secrets are never here: the SMTP password and the gateway's key are read from the environment
    variables these settings name."""

    timezone: str = "UTC"  # the holders' clock: quiet hours and daily digests follow it (e.g. Europe/Moscow)
    quiet_hours: str = "22-8"  # hours (from-to, local) when nothing is sent; "" for none
    daily_cap: int = 3  # messages a holder gets a day on one channel; more are suppressed
    digest_hour: int = 9  # the hour (local) a day's purchases digest goes out, the day after
    stale_days: int = 3  # a digest or a load older than this when processing learns of it is not sent
    low_balance: int = 0  # minor units: a card falling below it tells its holder (0: never)
    expiry_warning_days: int = 7  # a holder hears this many days before a program's points lapse (0: never)
    max_attempts: int = 5  # tries on temporary failures before a message fails for good
    retry_seconds: int = 60  # the first retry's wait; each next one waits twice as long
    public_url: str = "http://127.0.0.1:8025"  # where `smartpurse notify serve` answers unsubscribe links
    mail_from: str = "smartpurse <noreply@localhost>"
    smtp_host: str = ""  # "" : e-mail not set up (messages are suppressed, reason said)
    smtp_port: int = 587
    smtp_security: str = "starttls"  # starttls, tls (implicit, port 465) or none (a local test server)
    smtp_user: str = ""
    smtp_password_env: str = "SMARTPURSE_SMTP_PASSWORD"
    smtp_ca_file: str = ""  # a CA bundle to verify the server against ("" : the system's)
    sms_url: str = ""  # "" : SMS not set up; SMS.ru's is https://sms.ru/sms/send
    sms_api: str = "smsru"  # smsru (SMS.ru's HTTP API, built in) or form (POST of sms_params, 2xx is sent)
    sms_key_env: str = "SMARTPURSE_SMS_KEY"  # the gateway's api_id / bearer token, from the environment
    sms_params: str = "to={to}&text={text}"  # form: the POST body, {to} {text} {sender} filled in
    sms_sender: str = ""
    sms_part_price: int = 0  # minor units the gateway charges a part (the cost shown and reported)


@dataclass(frozen=True)
class WalletSettings:
    """The issuer's Wallet cards (docs/holders.md, "Wallet cards"): Apple Wallet store cards signed with
    the issuer's pass certificate, and Google Wallet loyalty objects. Key passphrases come from the
    environment variables named here; the key files themselves are encrypted PEM."""

    pass_type_id: str = ""  # pass.com.example.cards: "" means Apple Wallet cards are not set up
    team_id: str = ""
    organization: str = ""  # [issuer] name when empty
    certificate: str = ""  # the pass certificate (PEM), issued by Apple for pass_type_id
    key: str = ""  # its private key, encrypted PEM
    key_passphrase_env: str = "SMARTPURSE_PASS_KEY_PASSPHRASE"
    wwdr_certificate: str = ""  # Apple's WWDR intermediate (PEM)
    web_service_url: str = ""  # where `smartpurse notify serve` answers devices ({public_url}/wallet when "")
    locations: str = ""  # up to 10 "latitude,longitude,relevant text" entries separated by ";"
    push_url: str = ""  # where pass updates are pushed (APNs' gateway, or a relay to it)
    google_issuer_id: str = ""  # "" means Google Wallet save links are not set up
    google_class: str = "loyalty"  # the loyalty class suffix: <issuer id>.<class>
    google_service_account: str = ""  # the service account's e-mail
    google_key: str = ""  # its private key, encrypted PEM
    google_key_passphrase_env: str = "SMARTPURSE_GOOGLE_KEY_PASSPHRASE"


@dataclass(frozen=True)
class PortalSettings:
    """The holder's own page (docs/portal.md): how long codes and sessions live, when a login locks."""

    trusted_proxy: str = ""  # the reverse proxy's address: its X-Forwarded-For/-Proto are believed ("": none)
    code_minutes: int = 10  # a login code is good this long, once
    codes_per_hour: int = 3  # codes one card or phone may ask for an hour (an address: 5 times that)
    max_wrong_codes: int = 5  # wrong codes that lock a card, a phone or a client address out ...
    lock_minutes: int = 15  # ... for this long
    idle_minutes: int = 20  # a session unused this long is over
    session_hours: int = 12  # and any session after this long
    pdf_font: str = ""  # a TrueType font with Cyrillic for PDF statements ("": DejaVu Sans or Liberation Sans)


@dataclass(frozen=True)
class Settings:
    issuer: IssuerSettings = field(default_factory=IssuerSettings)
    merchants: MerchantSettings = field(default_factory=MerchantSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    wallet: WalletSettings = field(default_factory=WalletSettings)
    portal: PortalSettings = field(default_factory=PortalSettings)


DEFAULTS = Settings()


def _section(cls: type[Any], raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: [{cls.__name__}] must be a table")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in names:
            raise UserError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(names))})")
        expected = hints[key]
        if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise UserError(f"{where}: {key} must be a whole number, not {value!r}")
        if expected is str and not isinstance(value, (str, int)):
            raise UserError(f"{where}: {key} must be text, not {value!r}")
        values[key] = str(value) if expected is str else value
    return cls(**values)


def parse_settings(document: dict[str, Any], source: str = "smartpurse.toml") -> Settings:
    """Typed settings from a parsed TOML document; unknown sections and keys are refused by name."""
    sections = {"issuer": IssuerSettings, "merchants": MerchantSettings, "notify": NotifySettings,
                "wallet": WalletSettings, "portal": PortalSettings}
    values: dict[str, Any] = {}
    for name, raw in document.items():
        if name not in sections:
            raise UserError(f"{source}: unknown section [{name}] (known: {', '.join(sections)})")
        values[name] = _section(sections[name], raw, f"{source} [{name}]")
    return Settings(**values)


def read_settings(path: Path) -> Settings:
    """The settings in ``path``, or the defaults when there is no such file."""
    if not path.is_file():
        return DEFAULTS
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    return parse_settings(document, str(path))
