"""MIFARE DESFire EV2/EV3 host side: the purse on off-the-shelf cards (docs/desfire.md).

| Module | What |
|---|---|
| ``ev2`` | AuthenticateEV2First, session keys, CommMode.MAC and FULL (held to NXP AN12196's examples) |
| ``commands`` | the native commands, ISO-wrapped, chained both ways (``DesfireCard``) |
| ``status`` | every status code as an ``ApduError`` subclass |
| ``profile`` | the purse application's keys, files and identity: the one definition of the layout |
| ``personalization`` | issuing a blank card (``personalize_desfire``) |
| ``session`` | the purse verbs ``Terminal`` runs (``DesfireSession``) |
| ``tmac`` | the Transaction MAC as processing recomputes it |

None of it imports the reference card's applet or session, and the emulated card
(``purse.card.desfire``) imports none of it: both are written from NXP's public documents.
"""
