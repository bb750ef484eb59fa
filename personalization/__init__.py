"""Personalization: the issuer's keys, card numbers, issuing, and the card life cycle.

Issuer staff run it through ``smartpurse keys …`` and ``smartpurse cards …``
(docs/personalization.md).
"""
