"""The Slack transport: Bolt listeners, Block Kit rendering and the Slack `Chat`."""
