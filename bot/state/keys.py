"""Every Redis key the state package uses is built here."""

from __future__ import annotations

import hashlib
import re

# Ids made only of these characters (Telegram chat ids, UUIDs, ...) appear verbatim in keys, which
# keeps `redis-cli` debugging readable. Anything else - ':' that would mimic key structure, glob
# characters that would break SCAN MATCH, braces that would break hash tags, unicode, long ids -
# is replaced by a digest. '#' is not in the verbatim set, so a digest never equals a verbatim id.
_VERBATIM_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_FORBIDDEN_IN_PREFIX = re.compile(r"[\s{}*?\[\]\\]")


class StoreKeys:
    """Key names for one deployment (`prefix`), one conversation at a time.

    Layout: `<prefix>:conv:{<id>}`, `<prefix>:events:{<id>}`, `<prefix>:lock:{<id>}`.
    The braces are a Redis Cluster hash tag, so one conversation's keys share a slot and the
    save transaction stays valid on a cluster.
    """

    def __init__(self, prefix: str) -> None:
        if not prefix or _FORBIDDEN_IN_PREFIX.search(prefix):
            raise ValueError(
                f"invalid key prefix {prefix!r}: needs to be non-empty, without whitespace, "
                "braces or glob characters"
            )
        self.prefix = prefix

    def conversation(self, conversation_id: str) -> str:
        return self._key("conv", conversation_id)

    def events(self, conversation_id: str) -> str:
        return self._key("events", conversation_id)

    def lock(self, conversation_id: str) -> str:
        return self._key("lock", conversation_id)

    def message_seen(self, conversation_id: str, message_id: str) -> str:
        """Marks a client's message id as received (the conversation's hash tag, its own id after)."""
        return f"{self._key('seen', conversation_id)}:{encode_id(message_id)}"

    def review(self) -> str:
        """The shared list of messages kept for NLU review."""
        return f"{self.prefix}:review"

    def pattern(self) -> str:
        """SCAN MATCH pattern for every key under this prefix (maintenance and tests only)."""
        return f"{self.prefix}:*"

    def _key(self, kind: str, conversation_id: str) -> str:
        return f"{self.prefix}:{kind}:{{{encode_id(conversation_id)}}}"


def encode_id(conversation_id: str) -> str:
    """The id as it appears inside keys: verbatim when plainly safe, otherwise a digest."""
    if _VERBATIM_ID.fullmatch(conversation_id):
        return conversation_id
    digest = hashlib.sha256(conversation_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"#{digest}"


class InboxKeys:
    """Key names of one channel's update inbox (`<prefix>:inbox:{<channel>}:...`).

    The channel name is the hash tag: the stream, the de-duplication keys and the per-chat records
    share one Redis Cluster slot, so the scripts that touch several of them stay valid on a cluster.
    """

    group = "workers"  # the consumer group every worker reads through

    def __init__(self, prefix: str, channel: str) -> None:
        self._base = f"{StoreKeys(prefix).prefix}:inbox:{{{encode_id(channel)}}}"

    def stream(self) -> str:
        return f"{self._base}:stream"

    def seen(self, update_id: int) -> str:
        return f"{self._base}:seen:{int(update_id)}"

    def chat(self, chat: str) -> str:
        return f"{self._base}:chat:{encode_id(chat)}"

    def lease(self, chat: str) -> str:
        return f"{self._base}:lease:{encode_id(chat)}"
