"""Local, faithful fakes of the providers' HTTP APIs (and Slack's Web API).

The shell's `--sandbox` mode and the tests run these on loopback; the bot's real clients
talk to them over HTTP, so both exercise the same code as production.
"""
