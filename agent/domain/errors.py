"""Agent-side errors: the typed failures of the agent's own state and commands."""

from __future__ import annotations

from common.errors import FailedPrecondition


class StateDirUnusable(FailedPrecondition):
    """The state dir cannot be created, read or written."""

    code = "state_dir_unusable"


class NotEnrolled(FailedPrecondition):
    """The agent has no credential yet: `storesafe-agent enroll` was never run."""

    code = "not_enrolled"


class JobNotConfigured(FailedPrecondition):
    """A job was asked for that this agent has no configuration for yet."""

    code = "job_not_configured"


class AlreadyRunning(FailedPrecondition):
    """Another agent loop already uses this state dir."""

    code = "already_running"
