"""Alembic migrations of the issuer database, shipped inside the package so an installed
smartpurse can create and upgrade its schema (``processing.db.open_database``)."""
