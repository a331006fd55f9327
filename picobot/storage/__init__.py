"""Durable state in SQLite: the outbox and session history."""
