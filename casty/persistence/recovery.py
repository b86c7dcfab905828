"""Turning events and states into journal entries and back, and recovering an entity's state."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from typing import Any, final

from casty.abc import Journal, JournalEntry, RefCodec, Serializer, SnapshotEntry
from casty.errors import BackendNotFound, CorruptEntry
from casty.journals._checks import RowReplay
from casty.serializers import as_serializer

__all__ = ["EntryCodec", "recover"]


@final
class EntryCodec:
    """Encodes events and states with one serializer; decodes with the one an entry names.

    Entries written by another serializer (the entity's serializer was changed, say) stay
    readable: the name stored in the entry picks the serializer, built from the serializer
    registry on first use. Manifests are cached per class (`Serializer.manifest` is a type
    hint, so it depends on the class only).
    """

    __slots__ = ("_by_name", "_encode", "_manifests", "refs", "serializer")

    def __init__(self, serializer: Serializer, refs: RefCodec | None) -> None:
        self.serializer = serializer
        self.refs = refs
        self._encode = serializer.encode
        self._by_name: dict[str, Serializer] = {serializer.name: serializer}
        self._manifests: dict[type, str] = {}

    def encode(self, value: object) -> tuple[bytes, str]:
        """``(payload, manifest)`` of ``value``.

        Raises:
            EncodeError: the serializer cannot encode ``value``.
        """
        payload = self._encode(value, self.refs)
        manifest = self._manifests.get(value.__class__)
        if manifest is None:
            manifest = self._manifests[value.__class__] = self.serializer.manifest(value)
        return payload, manifest

    def decode(
        self, persistence_id: str, sequence_nr: int, payload: bytes, name: str, what: str
    ) -> object:
        """Decode a stored ``payload`` written by the serializer called ``name``.

        Raises:
            CorruptEntry: no serializer has that name, or it cannot decode the payload.
        """
        serializer = self._by_name.get(name)
        if serializer is None:
            try:
                serializer = self._by_name[name] = as_serializer(name)
            except BackendNotFound as exc:
                raise CorruptEntry(
                    f"{persistence_id!r}: the {what} at sequence_nr {sequence_nr} was written by "
                    f"serializer {name!r}, which is not available here"
                ) from exc
        try:
            return serializer.decode(payload, self.refs)
        except Exception as exc:  # a plug-in serializer may raise anything on bad bytes
            raise self.corrupt(persistence_id, sequence_nr, name, what, exc) from exc

    @staticmethod
    def corrupt(
        persistence_id: str, sequence_nr: int, name: str, what: str, exc: Exception
    ) -> CorruptEntry:
        """The error for a stored ``what`` (event, snapshot) that ``name`` cannot decode."""
        return CorruptEntry(
            f"{persistence_id!r}: the {what} at sequence_nr {sequence_nr} cannot be decoded "
            f"by serializer {name!r}: {exc}"
        )

    def decode_event(self, entry: JournalEntry) -> object:
        """The event stored in ``entry``; raises `CorruptEntry` like `decode`."""
        return self.decode(
            entry.persistence_id, entry.sequence_nr, entry.payload, entry.serializer, "event"
        )

    def decode_snapshot(self, snapshot: SnapshotEntry) -> object:
        """The state stored in ``snapshot``; raises `CorruptEntry` like `decode`."""
        return self.decode(
            snapshot.persistence_id,
            snapshot.sequence_nr,
            snapshot.payload,
            snapshot.serializer,
            "snapshot",
        )


async def recover(
    journal: Journal,
    persistence_id: str,
    codec: EntryCodec,
    on_event: Callable[[Any, Any], Any],
    state: object,
    sequence_nr: int,
    *,
    use_snapshot: bool,
) -> tuple[object, int]:
    """Rebuild an entity's state: the newest snapshot (when asked), then the events after it.

    Starts from ``state`` at ``sequence_nr`` (the initial state at 0 for a full recovery, the
    last durable state when catching up after a `SequenceConflict`). Events stream from the
    journal a page at a time, so memory does not grow with the log.

    Returns:
        ``(state, sequence_nr)``: the recovered state and the number the next write continues
        from, which is the journal's high-water mark when that is higher than the last event
        replayed (events deleted after the snapshot).

    Raises:
        CorruptEntry: a stored event or snapshot cannot be read or decoded.
        JournalUnavailable: the journal failed.
        Exception: whatever ``on_event`` raised.
    """
    if use_snapshot:
        snapshot = await journal.load_snapshot(persistence_id)
        if snapshot is not None:
            state = codec.decode_snapshot(snapshot)
            sequence_nr = snapshot.sequence_nr
    # Read before the replay: a writer racing us after this point shows up as a
    # SequenceConflict on our first write, never as events silently skipped.
    highest = await journal.highest_sequence_nr(persistence_id)
    # The per-event path, inlined: entries written by the entity's own serializer (nearly all)
    # are decoded without the codec's lookups; any other goes through the codec.
    serializer = codec.serializer
    name = serializer.name
    decode = serializer.decode
    refs = codec.refs
    if isinstance(journal, RowReplay):  # the SQL journals' fast path
        async with aclosing(journal._replay_rows(persistence_id, sequence_nr + 1)) as pages:
            async for page in pages:
                for row in page:
                    if row[2] == name:
                        try:
                            event = decode(row[1], refs)
                        except Exception as exc:  # a plug-in serializer may raise anything
                            raise codec.corrupt(persistence_id, row[0], name, "event", exc) from exc
                    else:
                        event = codec.decode(persistence_id, row[0], row[1], row[2], "event")
                    state = on_event(state, event)
                sequence_nr = page[-1][0]
        return state, max(sequence_nr, highest)
    async for entry in journal.replay(persistence_id, sequence_nr + 1):
        if entry.serializer == name:
            try:
                event = decode(entry.payload, refs)
            except Exception as exc:  # a plug-in serializer may raise anything on bad bytes
                raise codec.corrupt(persistence_id, entry.sequence_nr, name, "event", exc) from exc
        else:
            event = codec.decode_event(entry)
        state = on_event(state, event)
        sequence_nr = entry.sequence_nr
    return state, max(sequence_nr, highest)
