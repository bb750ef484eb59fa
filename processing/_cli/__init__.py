"""The back office's command line: ``process``, ``check``, ``settle``, ``report`` and the load desk.

Only ``cli.py`` imports it; the processing library under it never does, and it never
imports the issuer station (docs/architecture.md).
"""
