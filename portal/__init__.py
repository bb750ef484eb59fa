"""The holder's own page: balance, points, statement and a lost card, behind a one-time code (docs/portal.md).

A small web application the issuer runs next to processing, on the same database: Flask for the
routes and its Jinja2 templates (the holders' messages already use Jinja2), served by waitress, a
production WSGI server in pure Python with no C build and nothing to download, which also reads the
TLS reverse proxy's ``X-Forwarded-*`` headers when told to trust it. The parts that decide anything
(who may log in, what a holder sees, what a report of a lost card does) are plain functions on a
database connection in their own modules; ``portal.app`` only turns requests into calls of them.
"""
