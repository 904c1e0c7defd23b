"""Storage: SQLAlchemy Core (async) on SQLite (default) or PostgreSQL, with Alembic migrations.

``db`` URLs and engines · ``tables`` the schema · ``migrate`` upgrade at start-up ·
``keys`` the gateway-key repository and server secrets.
"""
