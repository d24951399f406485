"""promote-bot: promote releases from Slack behind a role map, approvals and an audit trail."""

__version__ = "0.1.0"
