"""Persistence: SQLAlchemy 2.x models, the async engine, and the group-commit record writer."""
