"""Persistence: typed SQLAlchemy 2 tables, sessions, repositories and Alembic migrations."""
