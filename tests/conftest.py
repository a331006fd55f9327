"""Shared test setup."""

import os

from hypothesis import settings

# python-telegram-bot warns (an error under filterwarnings=error) when RetryAfter.retry_after is
# read as an int; with this opt-in it is a timedelta, the behaviour of its next major version.
os.environ.setdefault("PTB_TIMEDELTA", "1")

# CI runs the same number of examples, derandomized: a red CI is then reproducible, and new
# counterexamples are hunted locally (random by default) and pinned with @example.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
