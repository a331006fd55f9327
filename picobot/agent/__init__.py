"""The agent: turns inbound messages into replies with an LLM and tools.

loop.py        AgentLoop: inbound topic -> commands / steering / session workers -> writers
turns.py       Agent: one turn (model calls, tool calls, steering), /stop, history
llm.py         the provider interface and the LLMError tree; demo.py, openai_llm.py
tools.py       ToolRegistry and the built-in tools (time, message)
steering.py    SteeringQueue; commands.py: slash commands
"""
