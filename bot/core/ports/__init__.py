"""The protocols the core drives: the providers, the store and the chat it posts to.

One module each; everything is importable from `bot.core.ports` too."""

from bot.core.ports.chat import Chat, ChatError
from bot.core.ports.provider import Provider
from bot.core.ports.store import (
    AuditStore,
    DueRead,
    InboxStore,
    LockStore,
    MessageStore,
    NoticeStore,
    OpenRequestExists,
    RequestStore,
    Seen,
    StepStore,
    Store,
    StoreError,
    TruthStore,
)

__all__ = [
    "AuditStore",
    "Chat",
    "ChatError",
    "DueRead",
    "InboxStore",
    "LockStore",
    "MessageStore",
    "NoticeStore",
    "OpenRequestExists",
    "Provider",
    "RequestStore",
    "Seen",
    "StepStore",
    "Store",
    "StoreError",
    "TruthStore",
]
