"""Entity id to shard id: a stable hash, identical on every node, platform and Python version.

The function (hash version 1) is::

    h = BLAKE2b(entity_id encoded as UTF-8, output length 8 bytes, no key, no salt, no person)
    shard_id = int.from_bytes(h, "big") % num_shards

BLAKE2b is RFC 7693. The output length is a parameter of BLAKE2b, so an 8-byte BLAKE2b is not
the first 8 bytes of the usual 64-byte digest: other languages must ask for an 8-byte output
(``b2sum -l 64``, libsodium ``crypto_generichash`` with ``outlen=8``). Python's built-in `hash`
is salted per process and must never decide placement.

The version is part of the join check: a node whose `HASH_VERSION` or ``num_shards`` differs
for a sharded type is refused (`incompatibility` gives the reason), because it would route the
same entity id to another shard.
"""

from __future__ import annotations

from hashlib import blake2b

from casty.errors import ConfigurationError

__all__ = ["HASH_VERSION", "entity_hash", "incompatibility", "shard_id_for"]

HASH_VERSION = 1
"""Version of the entity id to shard id function; bump it if the function ever changes."""

_MAX_NUM_SHARDS = 1 << 32


def entity_hash(entity_id: str) -> int:
    """The 64-bit unsigned hash of an entity id (BLAKE2b, 8-byte output, read big-endian).

    Raises:
        ConfigurationError: ``entity_id`` is not a `str`, or holds lone surrogates (no UTF-8).
    """
    try:
        data = entity_id.encode("utf-8")
    except (AttributeError, UnicodeEncodeError) as exc:
        raise ConfigurationError(
            f"an entity id must be a str encodable as UTF-8, got {entity_id!r}"
        ) from exc
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


def shard_id_for(entity_id: str, num_shards: int) -> int:
    """The shard of ``entity_id`` among ``num_shards`` shards (hash version 1).

    Pure and deterministic: the same arguments give the same result on every node, platform and
    Python version. Costs about a microsecond; regions cache the result per entity.

    Args:
        entity_id: any `str`, the empty string included.
        num_shards: the sharded type's shard count, 1 to 2**32.

    Returns:
        An int in ``0 .. num_shards - 1``.

    Raises:
        ConfigurationError: ``num_shards`` is out of range, or ``entity_id`` is not a UTF-8
            encodable `str`.
    """
    if type(num_shards) is not int or not 0 < num_shards <= _MAX_NUM_SHARDS:
        raise ConfigurationError(f"num_shards must be an int in 1..2**32, got {num_shards!r}")
    return entity_hash(entity_id) % num_shards


def incompatibility(
    type_name: str,
    *,
    num_shards: int,
    hash_version: int,
    expected_num_shards: int,
    expected_hash_version: int = HASH_VERSION,
) -> str | None:
    """Why a node with these shard settings may not join, or None when it may.

    Args:
        type_name: the sharded type's name (as given to ``system.spawn``), for the message.
        num_shards: the joining node's shard count for the type.
        hash_version: the joining node's hash version.
        expected_num_shards: the cluster's shard count for the type.
        expected_hash_version: the cluster's hash version (this node's by default).

    Returns:
        A sentence naming both values of the first mismatch, or None when both agree.
    """
    if hash_version != expected_hash_version:
        return (
            f"sharded type {type_name!r}: hash version {hash_version} differs from the "
            f"cluster's {expected_hash_version}"
        )
    if num_shards != expected_num_shards:
        return (
            f"sharded type {type_name!r}: num_shards={num_shards} differs from the cluster's "
            f"num_shards={expected_num_shards}"
        )
    return None
