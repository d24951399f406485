"""Transports drive the core: Slack (Bolt) and, for trying things out, a terminal shell."""
