"""Inbound: the intake checks every platform event once (access, flood, replay)."""
