"""A MIFARE DESFire EV2 card, emulated: what an issuer's off-the-shelf card does, without the hardware.

Written from NXP's public documents (the MIFARE DESFire Light data sheet MF2DL(H)x0 and its
application notes AN12343 and AN12196, which describe the same EV2 command set, secure
messaging and Transaction MAC), not from this project's host code: no module here imports
``purse.desfire``, and a contract in ``pyproject.toml`` keeps it so. Tests hold it to the
published vectors and drive it through pcscd with an outside DESFire client.

``picc`` answers ISO-wrapped native commands (``90 INS 00 00 Lc data 00``); ``state`` is the
card's persistent memory (applications, keys, files) and its byte image, committed through
``purse.card.storage`` so a pulled card tears like the reference card does.
"""
