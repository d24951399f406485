"""The protocols the core drives: the providers, the store and the chat it posts to.

One module each; everything is importable from `bot.core.ports` too."""

from bot.core.ports.chat import Chat, ChatError
from bot.core.ports.events import EventSender, Sent
from bot.core.ports.provider import Provider
from bot.core.ports.store import (
    AskedBefore,
    AuditStore,
    DueRead,
    EventStore,
    InboxStore,
    LockStore,
    MessageStore,
    NoticeStore,
    OpenRequestExists,
    RequestStore,
    Seen,
    StatsStore,
    StepStore,
    Store,
    StoreError,
    TruthStore,
)

__all__ = [
    "AskedBefore",
    "AuditStore",
    "Chat",
    "ChatError",
    "DueRead",
    "EventSender",
    "EventStore",
    "InboxStore",
    "LockStore",
    "MessageStore",
    "NoticeStore",
    "OpenRequestExists",
    "Provider",
    "RequestStore",
    "Seen",
    "Sent",
    "StatsStore",
    "StepStore",
    "Store",
    "StoreError",
    "TruthStore",
]
