"""The running daemon: startup/shutdown, channel supervision, reload, HTTP, logs, systemd."""
