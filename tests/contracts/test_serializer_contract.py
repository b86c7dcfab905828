"""Every built-in serializer, resolved by its registry name, passes `SerializerContract`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from casty.abc import Serializer
from casty.serializers import as_serializer
from casty.testing.serializer_contract import SerializerCapabilities, SerializerContract

CAPABILITIES = {
    "msgpack": SerializerCapabilities(),
    # Unpickling imports and calls whatever the bytes name: that is the point of the opt-in.
    "pickle": SerializerCapabilities(safe_decoding=False),
}


class TestSerializerContract(SerializerContract):
    @pytest.fixture(params=sorted(CAPABILITIES))
    def serializer_factory(self, request: pytest.FixtureRequest) -> Callable[[], Serializer]:
        name: str = request.param
        return lambda: as_serializer(name)

    @pytest.fixture
    def capabilities(self, serializer_factory: Callable[[], Serializer]) -> SerializerCapabilities:
        return CAPABILITIES[serializer_factory().name]
