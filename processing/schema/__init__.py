"""One database schema for the issuer: registry (personalization) and processing.

Each submodule defines its tables on the shared ``metadata``; importing this package
registers them all, which is what Alembic and ``processing.db`` need.
"""

from __future__ import annotations

from sqlalchemy import MetaData

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def load_all_tables() -> MetaData:
    """Import every table module so ``metadata`` knows the whole schema."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return metadata
