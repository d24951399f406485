"""Provider clients, one module each, behind `bot.core.ports.Provider`."""
