"""`PickleSerializer`: any picklable object, for clusters whose every peer is trusted."""

from __future__ import annotations

import io
import pickle
from typing import Any, ClassVar, Final, final

from casty.abc import RefCodec, Serializer
from casty.errors import ConfigurationError, DecodeError, EncodeError
from casty.registry import BackendURL

__all__ = ["PickleSerializer"]

#: Protocol 5 (PEP 574) is read by every Python Casty supports; a newer default could leave a
#: node on an older interpreter unable to read its peers.
_DEFAULT_PROTOCOL: Final = 5


@final
class PickleSerializer(Serializer):
    """Python's pickle. **Decoding runs arbitrary code: use it in trusted clusters only.**

    Unpickling bytes imports any module and calls any callable those bytes name, so a peer, or
    anyone able to write to the network or the journal, that can hand this serializer bytes can
    run code on this node. Use it only when every node and every stored byte is trusted (and
    the transport is authenticated, e.g. mutual TLS); `MsgpackSerializer` is the safe default.

    What it offers in return: every picklable object travels, with no restriction on kinds.
    Actor refs never travel pickled: they are written through the `RefCodec` handed to
    `encode` (pickle's ``persistent_id``) and resolved on arrival by the one handed to `decode`
    (``persistent_load``). Encoding and decoding are thread-safe.

    URL: ``pickle`` (or ``pickle://?protocol=5``). Query options: ``protocol`` (the pickle
    protocol written, 2 to `pickle.HIGHEST_PROTOCOL`, default 5; any protocol is read).
    Extra: none.

    Args:
        protocol: the pickle protocol to write.

    Raises:
        ConfigurationError: ``protocol`` is outside 2..`pickle.HIGHEST_PROTOCOL`.
    """

    name: ClassVar[str] = "pickle"

    def __init__(self, *, protocol: int = _DEFAULT_PROTOCOL) -> None:
        if not 2 <= protocol <= pickle.HIGHEST_PROTOCOL:
            raise ConfigurationError(
                f"pickle protocol must be within 2..{pickle.HIGHEST_PROTOCOL}, got {protocol}"
            )
        self.protocol = protocol

    @classmethod
    def from_url(cls, url: BackendURL, **options: Any) -> PickleSerializer:
        """Build from ``pickle`` or ``pickle://?protocol=4``; keyword options win.

        Raises:
            ConfigurationError: an unknown option, or a protocol that is not an integer in range.
        """
        unknown = (set(url.query) | set(options)) - {"protocol"}
        if unknown:
            raise ConfigurationError(f"pickle: unknown options {sorted(unknown)}")
        protocol = options.get("protocol", url.query.get("protocol", _DEFAULT_PROTOCOL))
        try:
            number = int(protocol)
        except ValueError as exc:
            raise ConfigurationError(f"pickle: protocol must be an integer: {protocol!r}") from exc
        return cls(protocol=number)

    def encode(self, obj: object, refs: RefCodec | None = None) -> bytes:
        """Return the pickle of ``obj``; actor refs are written through ``refs``.

        Raises:
            EncodeError: something inside ``obj`` cannot be pickled (locally defined classes,
                lambdas, sockets, ...), or nests too deeply.
        """
        try:
            if refs is None:
                return pickle.dumps(obj, protocol=self.protocol)
            buffer = io.BytesIO()
            _RefPickler(buffer, self.protocol, refs).dump(obj)
            return buffer.getvalue()
        except Exception as exc:  # the one choke point: pickling raises many unrelated types
            raise EncodeError(f"cannot pickle {type(obj).__name__}: {exc}") from exc

    def decode(self, data: bytes, refs: RefCodec | None = None) -> object:
        """Unpickle ``data``, **running whatever code it names**; refs resolve through ``refs``.

        Raises:
            DecodeError: truncated or malformed bytes, a missing module or class, an exception
                raised by the code the bytes call, or an actor ref while ``refs`` is ``None``.
                No other exception escapes.
        """
        try:
            if refs is None:
                return pickle.loads(data)
            return _RefUnpickler(io.BytesIO(data), refs).load()
        except Exception as exc:  # the one choke point: unpickling can raise anything
            raise DecodeError(f"cannot unpickle: {type(exc).__name__}: {exc}") from exc


class _RefPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, protocol: int, refs: RefCodec) -> None:
        super().__init__(file, protocol)
        self._refs = refs
        self._ref_type = refs.ref_type

    def persistent_id(self, obj: Any) -> str | None:
        if isinstance(obj, self._ref_type):
            return self._refs.to_wire(obj)
        return None


class _RefUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, refs: RefCodec) -> None:
        super().__init__(file)
        self._refs = refs

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is not str:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return self._refs.from_wire(pid)
