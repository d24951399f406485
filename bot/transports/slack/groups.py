"""The members of Slack user groups, read with `usergroups.users.list` (scope `usergroups:read`).

The core gets them as plain data (group id → user ids); this module only asks Slack.
"""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.transports.slack.chat import retry_after

_EXPLAIN = {
    "missing_scope": "the Slack app lacks usergroups:read (reinstall it from manifest.yml)",
    "no_such_subteam": "Slack knows no user group with this id",
    "plan_upgrade_required": "this workspace's plan has no user groups",
    "invalid_auth": "Slack rejected SLACK_BOT_TOKEN",
    "ratelimited": "Slack is rate-limiting usergroups.users.list",
}


class GroupLookupError(Exception):
    """Slack did not say who is in a group. `gone` when it says the group does not exist;
    `retry_after` when it asked to be asked again no sooner (a rate limit), in seconds."""

    def __init__(
        self, message: str, *, gone: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.gone = gone
        self.retry_after = retry_after


class SlackGroups:
    """Reads a user group's members through a Web API client. Give it one that does not wait
    out rate limits itself (no retry handlers): a Retry-After of 45 s would hold whoever asks
    (start-up, the groups job) that long; the error says when to ask again instead."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def members(self, group: str) -> frozenset[str]:
        try:
            response = await self.client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            code = str(exc.response.get("error", "unknown_error"))
            raise GroupLookupError(
                _EXPLAIN.get(code, f"Slack said {code}"),
                gone=code == "no_such_subteam",
                retry_after=retry_after(exc),
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GroupLookupError(f"Slack could not be reached ({type(exc).__name__})") from None
        users = response.get("users")
        if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
            raise GroupLookupError("Slack's answer had no list of users")
        return frozenset(users)
