"""Outbound: the one door to the chats — lanes, delivery, placeholders, rate budgets, streaming."""
