"""`Channel`: how the coordination handles reach their entities, from a member or a client.

Every handle (`Lease`, the data structures, the barrier) talks to its entity through one
`Channel`: a ref per internal sharded type and an ask. A member's channel holds its own
regions (``/system/casty-*``) and asks with its actor system; a `ClusterClient`'s holds
client shard refs that route each envelope straight to the owning member, and asks with the
client's system. The handles are the same code either way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, final

from casty.actors.ref import ActorRef
from casty.errors import AskTimeout, CastyError, ConfigurationError, CoordinationError
from casty.sharding.messages import ShardEnvelope

__all__ = ["AskFunction", "Channel"]

#: ``(ref, factory, timeout) -> reply``: `ActorSystem.ask` or `ClusterClient.ask`.
AskFunction = Callable[[ActorRef[Any], Callable[[ActorRef[Any]], Any], float], Awaitable[Any]]


@final
class Channel:
    """Refs of the coordination types and an ask, shared by every handle of one facade.

    Args:
        identity: who asks (a member's ``UniqueAddress`` or the client's address, as text):
            the prefix of lease owner ids, and the node a barrier watches.
        refs: a ref per internal sharded type name.
        ask: the ask of the member's or client's actor system.
    """

    __slots__ = ("_ask", "identity", "refs")

    def __init__(self, identity: str, refs: Mapping[str, ActorRef[Any]], ask: AskFunction) -> None:
        self.identity = identity
        self.refs = dict(refs)
        self._ask = ask

    async def ask(
        self,
        type_name: str,
        entity_id: str,
        make: Callable[[ActorRef[Any]], Any],
        timeout: float,
        error: type[CoordinationError],
        what: str,
    ) -> Any:
        """Ask entity ``entity_id`` of ``type_name`` ``make(reply_to)``; return the answer.

        Raises:
            ConfigurationError: an invalid entity id (passed through).
            error: no answer within ``timeout`` seconds, or the ask failed otherwise; the
                message starts with ``what``.
        """

        def factory(reply_to: ActorRef[Any]) -> ShardEnvelope:
            return ShardEnvelope(entity_id, make(reply_to))

        try:
            return await self._ask(self.refs[type_name], factory, timeout)
        except AskTimeout as exc:
            raise error(f"{what}: no answer within {timeout} s") from exc
        except CastyError as exc:
            if isinstance(exc, ConfigurationError | CoordinationError):
                raise
            raise error(f"{what}: {exc}") from exc
