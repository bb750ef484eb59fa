"""The issuer station's command line: ``keys``, ``cards``, ``program``, ``hotlist export`` and the demo.

The top of the application layer: the only command modules that may compose the issuer
station (``personalization``) with the back office (``processing``), as ``cards show``
(registry row and shadow balance), ``hotlist export`` (processing's list, the issuer's
signature) and ``demo`` (every role) do. The libraries under it never import it
(docs/architecture.md).
"""
