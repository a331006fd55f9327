"""The `schedule` tool: the model creates, lists and cancels the current chat's entries."""

from __future__ import annotations

from typing import Any

from picobot.agent.schedule.scheduler import ScheduleError, Scheduler, Target
from picobot.agent.tools import Tool, ToolContext, ToolResult

DESCRIPTION = (
    "Reminders and scheduled messages for the current chat. action=create (default) with text "
    "and exactly one of: at (ISO 8601 with UTC offset), in_seconds (> 0), or cron (5 fields, "
    "recurring, at most once a minute, in the bot's timezone). run_agent=true runs you with "
    "text as the instruction when it fires and sends your answer (e.g. a daily summary); "
    "otherwise the user gets '⏰ text'. action=list shows the entries; action=cancel with id."
)

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": ["create", "list", "cancel"]},
        "text": {"type": "string", "description": "The reminder, or the instruction."},
        "at": {"type": "string", "description": "e.g. 2026-12-01T09:00:00+01:00"},
        "in_seconds": {"type": "number", "description": "Seconds from now, > 0."},
        "cron": {"type": "string", "description": "e.g. '0 9 * * 1-5' (weekdays 9:00)."},
        "run_agent": {"type": "boolean", "description": "Run the agent on text when due."},
        "id": {"type": "integer", "description": "The entry to cancel (action=cancel)."},
    },
}


def _refused(reason: str) -> ToolResult:
    return ToolResult(f"error: {reason}", error=True)


def schedule_tool(scheduler: Scheduler | None) -> Tool:
    """`schedule`; without a scheduler (e.g. `picobot chat`), every call is refused."""

    async def handler(args: dict[str, Any], ctx: ToolContext) -> str | ToolResult:
        if scheduler is None:
            return _refused("scheduling needs the daemon (picobot run)")
        if ctx.inbound is None:
            return _refused("there is no chat to schedule for here")
        msg = ctx.inbound
        target = Target(msg.channel, msg.chat_id, msg.thread, msg.is_group)
        action = args.get("action") or "create"
        try:
            if action == "list":
                return await scheduler.reminders_text(target.chat)
            if action == "cancel":
                entry_id = args.get("id")
                if isinstance(entry_id, bool) or not isinstance(entry_id, int):
                    raise ScheduleError("cancel needs the entry's id (an integer)")
                entry = await scheduler.cancel(target.chat, entry_id)
                return f"Cancelled #{entry.id}."
            if action != "create":
                raise ScheduleError(f"unknown action {action!r} (create, list or cancel)")
            run_agent = args.get("run_agent", False)
            if not isinstance(run_agent, bool):
                raise ScheduleError("run_agent must be true or false")
            entry = await scheduler.create(
                target,
                str(args.get("text") or ""),
                at=args.get("at"),
                in_seconds=args.get("in_seconds"),
                cron=args.get("cron"),
                run_agent=run_agent,
            )
        except ScheduleError as exc:
            return _refused(str(exc))
        return f"Scheduled {scheduler.describe(entry)}"

    return Tool("schedule", DESCRIPTION, handler, PARAMETERS)
