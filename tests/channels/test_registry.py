import subprocess
import sys

import channels

# A fresh interpreter: this test process may have imported cryptography already.
PROBE = """
import sys, channels
channels.load("telegram")
print("cryptography" in sys.modules)
import telegram._bot
print(telegram._bot.CRYPTO_INSTALLED)
import cryptography.hazmat.primitives.hashes
print("cryptography" in sys.modules)
"""


def test_telegram_loads_without_cryptography_which_stays_importable() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False", "True"]


def test_a_package_imported_already_is_left_alone() -> None:
    before = sys.modules.get("json")
    with channels._kept_out(("json",)):
        assert sys.modules.get("json") is before
    assert sys.modules.get("json") is before
