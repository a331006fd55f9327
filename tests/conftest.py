"""Shared test setup."""

import os

# python-telegram-bot warns (an error under filterwarnings=error) when RetryAfter.retry_after is
# read as an int; with this opt-in it is a timedelta, the behaviour of its next major version.
os.environ.setdefault("PTB_TIMEDELTA", "1")
