"""Spawning: hierarchical paths, unique names, addresses, resolution and ref identity."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import pytest

from casty.actors import (
    ActorContext,
    ActorRef,
    ActorSystem,
    Behavior,
    Behaviors,
    DeadLetterReason,
)
from casty.errors import ConfigurationError, InvalidActorName, ResourceClosed
from casty.testing.wait import wait_until


@dataclass(frozen=True, slots=True)
class SpawnChild:
    name: str
    reply_to: ActorRef[Any]


def parent() -> Behavior[SpawnChild]:
    async def receive(ctx: ActorContext[SpawnChild], msg: SpawnChild) -> Behavior[SpawnChild]:
        try:
            child = ctx.spawn(Behaviors.ignore(), msg.name)
        except InvalidActorName as exc:
            msg.reply_to.tell(exc)
        else:
            msg.reply_to.tell(child)
        return Behaviors.same()

    return Behaviors.receive(receive)


async def test_paths_and_addresses_are_hierarchical(system: ActorSystem) -> None:
    top = system.spawn(parent(), "top")
    child = await system.ask(top, lambda r: SpawnChild("kid", r))
    assert top.path == "/user/top"
    assert top.address == "casty://test/user/top"
    assert child.path == "/user/top/kid"
    assert child.address == "casty://test/user/top/kid"
    assert system.address == "casty://test"


async def test_duplicate_top_level_name_raises(system: ActorSystem) -> None:
    system.spawn(Behaviors.ignore(), "only")
    with pytest.raises(InvalidActorName, match="already exists"):
        system.spawn(Behaviors.ignore(), "only")


async def test_duplicate_child_name_raises_in_the_parent(system: ActorSystem) -> None:
    top = system.spawn(parent(), "top")
    first = await system.ask(top, lambda r: SpawnChild("kid", r))
    second = await system.ask(top, lambda r: SpawnChild("kid", r))
    assert isinstance(first, ActorRef)
    assert isinstance(second, InvalidActorName)
    other = await system.ask(top, lambda r: SpawnChild("other-kid", r))
    assert other.path == "/user/top/other-kid"


async def test_name_is_free_again_once_the_actor_terminated(system: ActorSystem) -> None:
    ref = system.spawn(Behaviors.ignore(), "reused")
    await system.stop(ref)
    again = system.spawn(Behaviors.ignore(), "reused")
    assert again == ref  # same address, so equal refs
    assert system.resolve(again.address) is again


@pytest.mark.parametrize(
    "name",
    [
        *("", "a/b", "a#b", "with space", "$reserved", "tab\t", "new\n", 7),
        # Path tricks, control characters, and what would break "casty://sys@host:port/path".
        *(".", "..", "a\x00b", "bell\x07", "a@b", "a:b", "a?b", "a&b", "caf\u00e9", "a\\b"),
    ],
)
async def test_malformed_names_raise(system: ActorSystem, name: Any) -> None:
    with pytest.raises(InvalidActorName):
        system.spawn(Behaviors.ignore(), name)


@pytest.mark.parametrize("name", ["a", "A-z_0.9~x", "...", ".hidden", "v1.2", "a%20b", "-_~"])
async def test_names_use_letters_digits_and_unreserved_marks(
    system: ActorSystem, name: str
) -> None:
    ref = system.spawn(Behaviors.ignore(), name)
    assert ref.path == f"/user/{name}"
    assert system.resolve(ref.address) is ref


async def test_any_text_percent_encoded_is_a_valid_name(system: ActorSystem) -> None:
    for text in ("user@example.com", "caf\u00e9 au lait", "a/b?c#d", "x:1"):
        ref = system.spawn(Behaviors.ignore(), quote(text, safe=""))
        assert unquote(ref.path.rsplit("/", 1)[1]) == text


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True])
async def test_bad_mailbox_capacity_raises(system: ActorSystem, capacity: Any) -> None:
    with pytest.raises(ConfigurationError):
        system.spawn(Behaviors.ignore(), "bounded", mailbox_capacity=capacity)


async def test_context_knows_self_system_children(system: ActorSystem) -> None:
    seen: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        a = ctx.spawn(Behaviors.ignore(), "a")
        b = ctx.spawn(Behaviors.ignore(), "b")
        ctx.log.info("spawned %s and %s", a.path, b.path)
        seen.set_result(
            {
                "self": ctx.self,
                "name": ctx.name,
                "system": ctx.system,
                "children": set(ctx.children),
                "child_a": ctx.child("a"),
                "missing": ctx.child("zzz"),
            }
        )
        return Behaviors.ignore()

    ref = system.spawn(Behaviors.setup(setup), "knower")
    info = await seen
    assert info["self"] == ref and info["name"] == "knower" and info["system"] is system
    assert {c.path for c in info["children"]} == {"/user/knower/a", "/user/knower/b"}
    assert info["child_a"].path == "/user/knower/a" and info["missing"] is None


async def test_log_records_name_the_actor(system: ActorSystem, caplog: Any) -> None:
    done = asyncio.Event()

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        ctx.log.warning("hello from setup")
        done.set()
        return Behaviors.ignore()

    system.spawn(Behaviors.setup(setup), "logger")
    async with asyncio.timeout(2):
        await done.wait()
    assert "[/user/logger] hello from setup" in caplog.text
    # One logger family for the actor core; the path is also a field of the record.
    [record] = [r for r in caplog.records if "hello from setup" in r.getMessage()]
    assert record.name == "casty.actors"
    assert record.actor_path == "/user/logger"


async def test_failure_records_carry_the_actor_path(system: ActorSystem, caplog: Any) -> None:
    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        raise ValueError("bug")

    ref = system.spawn(Behaviors.receive(receive), "failing")
    ref.tell("go")
    await wait_until(lambda: any(r.levelname == "ERROR" for r in caplog.records))
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.name == "casty.actors"
    assert record.actor_path == "/user/failing"


async def test_resolve_finds_live_actors_by_address_or_path(system: ActorSystem) -> None:
    top = system.spawn(parent(), "top")
    child = await system.ask(top, lambda r: SpawnChild("kid", r))
    assert system.resolve("casty://test/user/top/kid") is child
    assert system.resolve("/user/top") is top
    assert system.resolve(system.dead_letters.address) is system.dead_letters


async def test_resolve_unknown_address_leads_to_dead_letters(
    system: ActorSystem, dead_letters: Any
) -> None:
    unknown = system.resolve("casty://test/user/nobody")
    foreign = system.resolve("casty://other@10.0.0.1:25520/user/x")
    assert unknown.address == "casty://test/user/nobody"
    assert foreign.address == "casty://other@10.0.0.1:25520/user/x"
    assert foreign.path == "/user/x"
    unknown.tell("hello?")
    letter = await dead_letters.expect_message()
    assert letter.message == "hello?" and letter.reason == DeadLetterReason.UNKNOWN_RECIPIENT
    assert letter.recipient == unknown


async def test_refs_compare_and_hash_by_address(system: ActorSystem) -> None:
    ref = system.spawn(Behaviors.ignore(), "eq")
    resolved = system.resolve("casty://test/user/eq")
    assert ref == resolved and hash(ref) == hash(resolved)
    assert len({ref, resolved}) == 1
    assert ref != system.spawn(Behaviors.ignore(), "other")
    assert ref != "casty://test/user/eq"
    assert repr(ref) == "<LocalActorRef casty://test/user/eq>"


async def test_ref_codec_round_trips_refs(system: ActorSystem) -> None:
    ref = system.spawn(Behaviors.ignore(), "wire")
    codec = system.ref_codec
    assert isinstance(ref, codec.ref_type)
    assert codec.to_wire(ref) == "casty://test/user/wire"
    assert codec.from_wire(codec.to_wire(ref)) is ref


async def test_system_actors_live_under_system(system: ActorSystem) -> None:
    ref = system.system_actor_of(Behaviors.ignore(), "service")
    assert ref.path == "/system/service"
    assert system.event_stream.path == "/system/eventStream"


async def test_spawn_after_shutdown_raises_resource_closed() -> None:
    system = ActorSystem(name="closed")
    await system.shutdown()
    with pytest.raises(ResourceClosed):
        system.spawn(Behaviors.ignore(), "late")


async def test_bad_system_arguments_raise() -> None:
    with pytest.raises(ConfigurationError):
        ActorSystem(name="no spaces")
    with pytest.raises(ConfigurationError):
        ActorSystem(name="ok", throughput=0)


def test_system_needs_a_running_loop() -> None:
    with pytest.raises(ConfigurationError, match="event loop"):
        ActorSystem(name="sync")
