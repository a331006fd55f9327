"""The core every layer shares; it imports nothing else of picobot.

messages.py    InboundMessage, OutboundMessage, Sender, Kind
errors.py      the exception tree (decided by class alone)
events.py      run events a turn emits
channel.py     the channel contract: Channel, Capabilities, RateBudget, State, Format, Rendered
bus.py         bounded topics with send/receive halves
retry.py       every retry: the tenacity factory, the outbound policy
metrics.py     prometheus counters and gauges
"""
