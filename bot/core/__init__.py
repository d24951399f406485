"""The transport-independent core: parse → authorize → workflow → provider → render.

Nothing in this package imports Slack, HTTP or SQL libraries; transports and providers
plug in through the protocols in `bot.core.ports`.
"""
