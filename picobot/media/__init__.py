"""Files: the media store, type sniffing, text extraction, and STT/TTS/image endpoints."""
