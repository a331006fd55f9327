"""Reminders and scheduled messages: a durable store, the scheduler, the `schedule` tool."""

from picobot.agent.schedule.scheduler import Deliver, RunTurn, ScheduleError, Scheduler, Target
from picobot.storage.schedule import Entry, EntryStore, ScheduleStore

__all__ = [
    "Deliver",
    "Entry",
    "EntryStore",
    "RunTurn",
    "ScheduleError",
    "ScheduleStore",
    "Scheduler",
    "Target",
]
