"""Addresses and the wire format: parsing, round trips, and decoders fed arbitrary bytes."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from remote_support import Num, Secret

from casty.abc import Address, RefCodec
from casty.errors import ConfigurationError, DecodeError, EncodeError, HandshakeFailed
from casty.remote import PROTOCOL_VERSION, ActorAddress
from casty.remote.envelope import (
    FRAME_ENVELOPES,
    OP_WATCH,
    Accept,
    EnvelopeCodec,
    Hello,
    Refuse,
    Undecodable,
    decode_handshake,
    encode_handshake,
)
from casty.serializers import MsgpackSerializer, PickleSerializer


class PathCodec(RefCodec):
    """Refs as plain strings, enough for the envelope codec outside an actor system."""

    ref_type = type(None)  # never matches: messages here carry no refs

    def to_wire(self, ref: Any) -> str:
        raise AssertionError("no refs expected")

    def from_wire(self, address: str) -> Any:
        return address


# ---- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "casty://shop@10.0.0.1:25520/user/cart",
            ActorAddress("shop", "10.0.0.1", 25520, "/user/cart"),
        ),
        ("casty://shop@host:1", ActorAddress("shop", "host", 1, "")),
        ("casty://shop/user/a", ActorAddress("shop", None, None, "/user/a")),
        ("casty://shop", ActorAddress("shop")),
        ("casty://s@[::1]:7/temp/$1", ActorAddress("s", "::1", 7, "/temp/$1")),
    ],
)
def test_actor_address_round_trips(text: str, expected: ActorAddress) -> None:
    parsed = ActorAddress.parse(text)
    assert parsed == expected
    assert str(parsed) == text


@pytest.mark.parametrize(
    "text",
    [
        "http://shop@h:1/x",
        "casty://",
        "casty://bad name@h:1",
        "casty://shop@h/user/a",
        "casty://shop@h:99999",
        "casty://shop@:12/x",
        "casty://shop@h:-1",
    ],
)
def test_malformed_actor_addresses_are_refused(text: str) -> None:
    with pytest.raises(ConfigurationError):
        ActorAddress.parse(text)


def test_actor_address_parts() -> None:
    address = ActorAddress.of_node("shop", Address("10.0.0.1", 25520)).with_path("/user/a")
    assert address.is_remote and address.node == Address("10.0.0.1", 25520)
    assert address.root == "casty://shop@10.0.0.1:25520"
    assert not ActorAddress("shop").is_remote and ActorAddress("shop").node is None
    with pytest.raises(ConfigurationError):
        address.with_path("user/a")


# ---- handshake frames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        Hello("t", "h", 1, 2**64 - 1, "g", 2, "msgpack", 2**32 - 1),
        Accept("t", "h", 1, 0, 1),
        Refuse("go away"),
        Refuse("shutting down", transient=True),
    ],
)
def test_handshake_frames_round_trip(message: Hello | Accept | Refuse) -> None:
    assert decode_handshake(encode_handshake(message)) == message


def test_handshake_of_another_version_is_a_handshake_failure() -> None:
    frame = msgpack.packb([1, "casty", PROTOCOL_VERSION + 1, "t", "h", 1, 2])
    with pytest.raises(HandshakeFailed, match="protocol version mismatch"):
        decode_handshake(frame)
    # A refusal stays readable across versions, so its reason is never lost.
    refuse = msgpack.packb([2, "casty", PROTOCOL_VERSION + 1, "because"])
    assert decode_handshake(refuse) == Refuse("because")


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",
        msgpack.packb([0, "nope", 1]),
        msgpack.packb([0, "casty", PROTOCOL_VERSION, "t"]),
        msgpack.packb([0, "casty", PROTOCOL_VERSION, "t", "h", "port", 1, "g", 2, "msgpack"]),
        msgpack.packb([9, "casty", PROTOCOL_VERSION]),
        msgpack.packb({"a": 1}),
    ],
)
def test_malformed_handshake_frames_raise_decode_error(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_handshake(frame)


# ---- envelope frames -------------------------------------------------------------------------


@pytest.fixture(params=["msgpack", "pickle"])
def codec(request: pytest.FixtureRequest) -> EnvelopeCodec:
    serializer = MsgpackSerializer() if request.param == "msgpack" else PickleSerializer()
    return EnvelopeCodec(serializer, PathCodec())


def test_envelopes_round_trip(codec: EnvelopeCodec) -> None:
    frame = [FRAME_ENVELOPES, "/user/a", Num(1), OP_WATCH, "/user/b", "/user/c", [1, (2, 3)]]
    assert codec.decode(codec.encode(frame)) == (frame, True)


def test_unencodable_message_raises_encode_error(codec: EnvelopeCodec) -> None:
    with pytest.raises(EncodeError):
        codec.encode([FRAME_ENVELOPES, "/user/a", lambda: None])
    assert codec.check(Num(1)) is None
    assert isinstance(codec.check(lambda: None), EncodeError)


def test_one_undecodable_message_spares_the_rest_of_the_frame() -> None:
    strict = MsgpackSerializer(strict=True)
    strict.register(Num)
    sender = EnvelopeCodec(MsgpackSerializer(), PathCodec())
    receiver = EnvelopeCodec(strict, PathCodec())
    frame = sender.encode([FRAME_ENVELOPES, "/a", Num(1), "/b", Secret("x"), "/c", Num(3)])
    items, clean = receiver.decode(frame)
    assert not clean
    assert items[:3] == [FRAME_ENVELOPES, "/a", Num(1)]
    assert items[3] == "/b" and isinstance(items[4], Undecodable)
    assert "not registered" in items[4].reason
    assert items[5:] == ["/c", Num(3)]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (msgpack.packb([99, "x"]), "unknown frame type 99"),
        (msgpack.packb([]), "not a non-empty array"),
        (msgpack.packb("text"), "not a non-empty array"),
        (msgpack.packb([FRAME_ENVELOPES, "/a"]), "without a body"),
        (msgpack.packb([FRAME_ENVELOPES, 1.5, "x"]), "neither a path nor an operation"),
        (msgpack.packb([FRAME_ENVELOPES, "/a", 1]) + b"\x00", "malformed envelope"),
        (msgpack.packb([FRAME_ENVELOPES, "/a", 1])[:-1], "malformed envelope"),
    ],
)
def test_malformed_envelopes_raise_decode_error(
    codec: EnvelopeCodec, frame: bytes, reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        codec.decode(frame)


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=8,
)


@pytest.mark.slow
@SETTINGS
@given(st.binary(max_size=300))
def test_decoders_raise_only_decode_error_on_random_bytes(data: bytes) -> None:
    for codec in (
        EnvelopeCodec(MsgpackSerializer(), PathCodec()),
        EnvelopeCodec(PickleSerializer(), PathCodec()),
    ):
        try:
            items, _ = codec.decode(data)
        except DecodeError:
            pass
        else:
            assert items[0] == FRAME_ENVELOPES and len(items) % 2 == 1
    try:
        decode_handshake(data)
    except (DecodeError, HandshakeFailed):
        pass


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(msgpack_values, max_size=6), st.binary(max_size=40))
def test_decoders_raise_only_decode_error_on_well_formed_msgpack(
    items: list[Any], ext_payload: bytes
) -> None:
    codec = EnvelopeCodec(MsgpackSerializer(), PathCodec())
    frames = [
        msgpack.packb([FRAME_ENVELOPES, *items]),
        msgpack.packb([FRAME_ENVELOPES, "/a", msgpack.ExtType(5, ext_payload), *items]),
        msgpack.packb([FRAME_ENVELOPES, "/a", msgpack.ExtType(1, ext_payload)]),
    ]
    for frame in frames:
        try:
            decoded, _ = codec.decode(frame)
        except DecodeError:
            continue
        assert all(type(r) in (str, int) for r in decoded[1::2])


# ---- one-entry frames (the request/reply fast path) ------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/user/a", "/temp/$123", "/user/" + "p" * 40, "/user/" + "q" * 300, "/user/ünï", ""],
)
@pytest.mark.parametrize(
    "message", [Num(7), (1, "two"), 2**70, "text", None, [Num(1), {"k": (2,)}], {3, 4}]
)
def test_a_one_entry_frame_is_the_bytes_msgpack_writes_for_the_whole_frame(
    path: str, message: Any
) -> None:
    serializer = MsgpackSerializer()
    refs = PathCodec()
    codec = EnvelopeCodec(serializer, refs)
    frame = [FRAME_ENVELOPES, path, message]
    assert codec.encode(frame) == serializer.encode(frame, refs)
    assert codec.decode(codec.encode(frame)) == (frame, True)


def test_a_type_registered_after_first_use_travels_under_its_new_name() -> None:
    serializer = MsgpackSerializer()
    codec = EnvelopeCodec(serializer, PathCodec())
    before = codec.encode([FRAME_ENVELOPES, "/a", Num(1)])
    assert b"remote_support:Num" in before
    serializer.register(Num, name="num.v1")
    after = codec.encode([FRAME_ENVELOPES, "/a", Num(1)])
    assert b"num.v1" in after and b"remote_support:Num" not in after
    assert codec.decode(after) == ([FRAME_ENVELOPES, "/a", Num(1)], True)


def test_an_unencodable_one_entry_frame_raises_encode_error() -> None:
    codec = EnvelopeCodec(MsgpackSerializer(), PathCodec())
    with pytest.raises(EncodeError, match="cannot encode"):
        codec.encode([FRAME_ENVELOPES, "/a", object()])
    with pytest.raises(EncodeError):
        codec.encode([FRAME_ENVELOPES, "/bad\udc80path", Num(1)])  # not valid Unicode
