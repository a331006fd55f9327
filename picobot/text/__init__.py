"""Pure text functions: fence-aware splitting and Markdown rendering per platform."""
