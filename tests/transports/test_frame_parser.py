"""The frame codec: reassembly from arbitrary chunks, limits, and URL option parsing."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casty.errors import ConfigurationError, FrameTooLarge
from casty.transports._framing import FrameParser, OptionReader, check_frame_limit, pack_header


def encode_frames(frames: list[bytes]) -> bytes:
    return b"".join(pack_header(len(frame)) + frame for frame in frames)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(
    frames=st.lists(st.binary(max_size=300), max_size=40),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
)
def test_parser_reassembles_frames_split_at_any_points(
    frames: list[bytes], cuts: list[int]
) -> None:
    parser = FrameParser(max_frame_size=300)
    received: list[bytes] = []
    for chunk in split_at(encode_frames(frames), cuts):
        received.extend(parser.feed(chunk))
    assert received == frames
    assert parser.pending == 0


@given(
    data=st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    limit=st.integers(min_value=1, max_value=500),
)
def test_parser_on_random_bytes_yields_exact_frames_or_raises_frame_too_large(
    data: bytes, cuts: list[int], limit: int
) -> None:
    # Reference decoding of the same bytes in one piece.
    expected: list[bytes] = []
    pos, too_large = 0, False
    while len(data) - pos >= 4:
        (size,) = struct.unpack_from(">I", data, pos)
        if size > limit:
            too_large = True
            break
        if pos + 4 + size > len(data):
            break
        expected.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    parser = FrameParser(max_frame_size=limit)
    received: list[bytes] = []
    try:
        for chunk in split_at(data, cuts):
            received.extend(parser.feed(chunk))
    except FrameTooLarge:
        received.extend(parser.salvage)
        assert too_large
    else:
        assert not too_large
        assert parser.pending == len(data) - pos
    assert received == expected


def test_header_over_the_limit_raises_before_the_body_arrives() -> None:
    parser = FrameParser(max_frame_size=10)
    assert parser.feed(struct.pack(">I", 10) + b"0123456789") == [b"0123456789"]
    with pytest.raises(FrameTooLarge, match="11-byte frame"):
        parser.feed(struct.pack(">I", 11))


def test_frames_before_a_bad_header_are_salvaged() -> None:
    parser = FrameParser(max_frame_size=10)
    with pytest.raises(FrameTooLarge):
        parser.feed(encode_frames([b"a", b"bc"]) + struct.pack(">I", 99))
    assert parser.salvage == [b"a", b"bc"]


def test_large_frame_in_many_chunks_is_reassembled_once() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    parser = FrameParser(max_frame_size=len(payload))
    wire = encode_frames([payload, b"next"])
    received: list[bytes] = []
    for start in range(0, len(wire), 1000):
        received.extend(parser.feed(wire[start : start + 1000]))
    assert received == [payload, b"next"]


def test_header_is_a_four_byte_big_endian_length() -> None:
    assert pack_header(2) + b"ab" == b"\x00\x00\x00\x02ab"


@pytest.mark.parametrize("limit", [0, -1, 2**32, 1.5, True])
def test_invalid_frame_limits_are_refused(limit: object) -> None:
    with pytest.raises(ConfigurationError):
        check_frame_limit(limit)  # type: ignore[arg-type]


def test_option_reader_converts_and_lets_keywords_win() -> None:
    reader = OptionReader(
        "tcp", {"max_frame_size": "1024", "flag": "yes", "t": "0.5"}, {"max_frame_size": 7}
    )
    assert reader.integer("max_frame_size", 1) == 7
    assert reader.flag("flag", False) is True
    assert reader.number("t", 1.0) == 0.5
    assert reader.integer("absent", 3) == 3
    reader.finish()


def test_option_reader_refuses_unknown_and_malformed_options() -> None:
    with pytest.raises(ConfigurationError, match="unknown tcp:// option"):
        OptionReader("tcp", {"max_frame_sise": "1"}, {}).finish()
    with pytest.raises(ConfigurationError, match="not a valid int"):
        OptionReader("tcp", {"high_water": "lots"}, {}).integer("high_water", 1)
    with pytest.raises(ConfigurationError, match="not a boolean"):
        OptionReader("tls", {"check_hostname": "maybe"}, {}).flag("check_hostname", False)
