"""Which user classes a safe serializer may rebuild, and how a wire name finds its class.

Shared by the serializers that name types on the wire. Nothing here imports a module or calls
user code while resolving a name: lookups read ``sys.modules`` and the ``__dict__`` of modules
and classes directly, so neither a module ``__getattr__`` (PEP 562) nor a metaclass hook runs.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import sys
from typing import Literal

__all__ = [
    "Kind",
    "builds_plainly",
    "constructor_problem",
    "dataclass_fields",
    "kind_of",
    "resolve",
    "wire_name",
]

#: The user kinds a safe decoder instantiates; everything else is refused.
Kind = Literal["dataclass", "enum", "namedtuple"]


def kind_of(cls: type) -> Kind | None:
    """The kind of ``cls``, or ``None`` when a safe decoder must not build it.

    A subclass of a dataclass that is not decorated itself is not a dataclass here: its own
    attributes would be lost silently.
    """
    if "__dataclass_fields__" in cls.__dict__:
        return "dataclass"
    if issubclass(cls, enum.Enum):
        return "enum"
    if issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple):
        return "namedtuple"
    return None


def wire_name(cls: type) -> str:
    """The stable ``module:qualname`` of ``cls``.

    Raises:
        ValueError: ``cls`` is defined inside a function, so no other node can find it by name.
    """
    qualname = cls.__qualname__
    if "<locals>" in qualname:
        raise ValueError(
            f"{cls.__module__}.{qualname} is defined inside a function; define it at module "
            "level or register it with a name"
        )
    return f"{cls.__module__}:{qualname}"


def resolve(name: str) -> type:
    """The class named ``module:qualname`` in an already-imported module; never imports.

    Raises:
        LookupError: malformed name, module not imported, or no class under that qualname.
    """
    module_name, sep, qualname = name.partition(":")
    if not sep or not module_name or not qualname:
        raise LookupError(f"malformed type name {name!r} (expected module:qualname)")
    module = sys.modules.get(module_name)
    if module is None:
        raise LookupError(f"unknown type {name!r}: module {module_name!r} is not imported here")
    found: object = module
    for part in qualname.split("."):
        try:
            found = vars(found)[part]
        except (KeyError, TypeError):
            found = None
        if not isinstance(found, type):
            raise LookupError(f"unknown type {name!r}: {part!r} is not a class there")
    assert isinstance(found, type)
    return found


def constructor_problem(cls: type, field_names: frozenset[str]) -> str | None:
    """Why ``cls(**fields)`` cannot rebuild an instance, or ``None`` when it can.

    Called once per class when its encoder is built, so a class a peer could never rebuild
    (an ``InitVar`` without default, a custom ``__init__`` with other required or positional-only
    parameters) is refused at encoding, not on the receiving node.
    """
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return None  # no introspectable signature (C types): the call decides at decoding
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            return f"its constructor has the positional-only parameter {param.name!r}"
        required = param.default is inspect.Parameter.empty and param.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
        if required and param.name not in field_names:
            return f"its constructor requires {param.name!r}, which is not a field"
    return None


def dataclass_fields(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The field names of dataclass ``cls``: ``(init fields, init=False fields)``, in order."""
    fields = dataclasses.fields(cls)
    return (
        tuple(f.name for f in fields if f.init),
        tuple(f.name for f in fields if not f.init),
    )


def builds_plainly(cls: type) -> bool:
    """Whether dataclass ``cls`` can be rebuilt from all its field values without calling it.

    True when calling it would do nothing but assign the fields: its ``__init__`` is the one
    `dataclasses` generated (no ``__init__`` of the user's), there is no ``__post_init__``, no
    ``__new__`` other than ``object``'s, no ``InitVar`` (or ``ClassVar``) pseudo-field, and
    either it is frozen (the generated ``__init__`` bypasses ``__setattr__`` too) or it keeps
    ``object.__setattr__``. Then setting the fields on ``object.__new__(cls)`` builds the same
    object as the call, for less; defaults and validation only matter on the other path.
    """
    params = cls.__dict__.get("__dataclass_params__")
    init = cls.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    if params is None or not params.init or code is None:
        return False
    fields = dataclasses.fields(cls)
    init_names = {f.name for f in fields if f.init}
    parameters = code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]
    generated = (
        code.co_filename == "<string>"  # dataclasses compiles the __init__ it writes
        and getattr(init, "__qualname__", None) == f"{cls.__qualname__}.__init__"
        and len(parameters) == len(init_names)
        and set(parameters) == init_names
    )
    new: object = cls.__new__
    setattr_: object = cls.__setattr__
    return (
        generated
        and not hasattr(cls, "__post_init__")
        and new is object.__new__
        and len(cls.__dict__["__dataclass_fields__"]) == len(fields)
        and (params.frozen or setattr_ is object.__setattr__)
    )
