"""Name -> entry registries whose unknown-name errors list the valid names, and users' own plug-ins.

A suite names a registered entry (``type: pgd``) or its own code (``type: package.module:name``);
:meth:`Registry.resolve` answers both, with one-line config errors naming the key.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to entries whose unknown-name error lists the valid names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def get(self, name: str, key: str | None = None) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            if key is None:
                raise ConfigError(f"unknown {self.kind} {name!r}: expected one of {', '.join(self.names())}") from None
            raise ConfigError(f"config key '{key}': unknown {self.kind} {name!r}; expected one of "
                              f"{', '.join(self.names())} or package.module:name for your own") from None

    def resolve(self, name: Any, key: str) -> T | Any:
        """The registered entry ``name``, or the object a ``package.module:name`` string points to."""
        if isinstance(name, str) and ":" in name:
            return load_plugin(name, key)
        return self.get(name, key)

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def load_plugin(spec: str, key: str) -> Any:
    """Import ``package.module:name`` and return ``name``; a one-line ConfigError naming ``key`` if it fails."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or not all(part.isidentifier() for part in module_name.split(".") + attr.split(".")):
        raise ConfigError(f"config key '{key}': expected a registered name or package.module:name, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's module is reported on one line
        raise ConfigError(f"config key '{key}': cannot import {module_name!r} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"config key '{key}': module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj
