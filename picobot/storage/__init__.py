"""Durable state in SQLite: the outbox (its protocol in `records.py`), session history and
schedules."""
