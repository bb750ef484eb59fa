"""MIFARE DESFire EV2/EV3 host side: what a terminal needs to talk to an off-the-shelf card.

So far the AES EV2 secure messaging (``purse.desfire.ev2``), checked against NXP AN12196's
worked examples; the card profile, the native commands and the emulator follow (issue 12).
"""
