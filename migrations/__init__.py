"""Alembic environment and revisions for the regctl schema."""
