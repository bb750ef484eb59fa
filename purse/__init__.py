"""smartpurse: smart-card electronic purses and loyalty points.

``purse`` is the card side: the card application, its protocol, transports, the SAM
and the terminal library that terminal vendors embed.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("smartpurse")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"
