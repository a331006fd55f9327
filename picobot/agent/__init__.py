"""The agent: turns inbound messages into replies with an LLM and tools."""
