"""The machinery behind the suite YAML: frozen dataclasses built and checked key by key.

Config dataclasses live beside the code they configure (each attack's and detector's in its own
module, the suite's sections in ``config.py``); they declare their checks with :func:`param`, and
:func:`build` turns a parsed YAML mapping into one of them, raising a one-line
:class:`~advsal_bench.errors.ConfigError` that names the key path, what was expected and what
was found.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from typing import Any, Callable, Mapping, Union

import yaml

from .errors import ConfigError

__all__ = ["param", "build", "build_named", "plain", "describe", "unknown_key", "yaml_load", "apply_overrides",
           "parse_override"]

#: Builds one entry of a named mapping (``attacks``, ``detectors``): (name, body, key path) -> config.
EntryBuilder = Callable[[str, dict, str], Any]


def param(default: Any = dataclasses.MISSING, **checks: Any) -> Any:
    """A dataclass field with checks: ``ge``/``gt``/``le``/``lt`` bounds, ``choices``, ``nonempty``,
    ``unique``, ``pattern``, ``model`` (a registered model name), ``check`` (a callable
    ``(value, key) -> None`` raising ConfigError), ``entries`` (an :data:`EntryBuilder` for a
    mapping of named sections) and ``section`` (a builder ``(raw, key) -> value`` for the field).
    ``factory`` gives a default built on first use instead of ``default``."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for defaults")
    if "factory" in checks:
        factory = checks.pop("factory")
        return dataclasses.field(default_factory=factory, metadata=checks)
    return dataclasses.field(default=default, metadata=checks)


# ---- YAML ----------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe loader that also reads ``1e-3`` as a float (YAML 1.1 would make it a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

_MAX_NODES = 100_000


def yaml_load(text: str, source: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        # Bound alias expansion: a "billion laughs" YAML would otherwise explode our tree walk.
        if node is not None and _count_nodes(node, limit=_MAX_NODES) > _MAX_NODES:
            raise ConfigError(f"{source}: YAML expands to more than {_MAX_NODES} nodes (alias bomb?)")
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: malformed YAML{where}: {problem}") from None
    finally:
        loader.dispose()


def _count_nodes(node: yaml.Node, *, limit: int) -> int:
    count, stack = 0, [node]
    while stack and count <= limit:
        n = stack.pop()
        count += 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.extend((k, v))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
    return count


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], parsed value); the value is read as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. classifier.epochs=3")
    return key.strip().split("."), yaml_load(value, f"--set {key}")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"--set {item!r}: key '{'.'.join(path[: i + 1])}' is a {type(child).__name__}, not a mapping"
                )
            node = child
        node[path[-1]] = value
    return raw


# ---- building dataclasses ------------------------------------------------------------------------


def _key(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def unknown_key(path: str, key: Any, valid: list[str]) -> ConfigError:
    hint = difflib.get_close_matches(str(key), valid, n=1)
    suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
    return ConfigError(f"config key '{_key(path, str(key))}': unknown key{suggestion} (expected one of: {', '.join(valid)})")


def build(cls: type, raw: Any, path: str) -> Any:
    """Build dataclass ``cls`` from the mapping ``raw`` found at key ``path`` ('' for the top level)."""
    where = path or "suite"
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key '{where}': expected a mapping, got {describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise unknown_key(path, key, list(fields))
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = _key(path, name)
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                raise ConfigError(f"config key '{key}': required, expected {_expected(hints[name])}")
            continue
        if "entries" in f.metadata:
            values[name] = build_named(raw[name], key, f.metadata["entries"])
        elif "section" in f.metadata:
            values[name] = f.metadata["section"](raw[name], key)
        else:
            values[name] = _convert(hints[name], raw[name], key)
        check(values[name], f.metadata, key)
    return cls(**values)


def build_named(raw: Any, path: str, entry: EntryBuilder) -> Mapping[str, Any]:
    """A non-empty mapping name -> section, each section built by ``entry`` (null: all defaults)."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"config key '{path}': expected a non-empty mapping of name -> settings, got {describe(raw)}")
    out = {}
    for name, body in raw.items():
        if body is not None and not isinstance(body, Mapping):
            raise ConfigError(f"config key '{path}.{name}': expected a mapping of settings, got {describe(body)}")
        out[str(name)] = entry(str(name), dict(body or {}), f"{path}.{name}")
    return types.MappingProxyType(out)


def _expected(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_expected(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_expected(typing.get_args(tp)[0])}s"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}': expected {_expected(tp)}, got {describe(value)}")
    if origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(items))
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if tp is Any:
        return value
    if _scalar_ok(tp, value):
        if tp is float:
            if not math.isfinite(value):
                raise ConfigError(f"config key '{key}': expected a finite number, got {value}")
            return float(value)
        return value
    raise ConfigError(f"config key '{key}': expected {_expected(tp)}, got {describe(value)}")


def _scalar_ok(tp: Any, value: Any) -> bool:
    if isinstance(value, bool):
        return tp is bool
    if tp is int:
        return isinstance(value, int)
    if tp is float:
        return isinstance(value, (int, float))
    return tp is str and isinstance(value, str)


_BOUNDS = (("ge", lambda a, b: a >= b, ">="), ("gt", lambda a, b: a > b, ">"),
           ("le", lambda a, b: a <= b, "<="), ("lt", lambda a, b: a < b, "<"))


def check(value: Any, meta: Mapping[str, Any], key: str) -> None:
    """Apply a field's checks (see :func:`param`) to its converted value."""
    if value is None:
        return
    if meta.get("nonempty") and isinstance(value, tuple) and not value:
        raise ConfigError(f"config key '{key}': expected a non-empty list, got []")
    if meta.get("unique") and isinstance(value, tuple) and len(set(value)) != len(value):
        raise ConfigError(f"config key '{key}': expected no repeated entries, got {list(value)}")
    items = list(value) if isinstance(value, tuple) else [value]
    for i, v in enumerate(items):
        k = f"{key}[{i}]" if isinstance(value, tuple) else key
        choices = meta.get("choices")
        if callable(choices):
            choices = choices()
        if choices is not None and v not in choices:
            raise ConfigError(f"config key '{k}': expected one of {', '.join(choices)}, got {describe(v)}")
        for op, test, word in _BOUNDS:
            if op in meta and isinstance(v, (int, float)) and not test(v, meta[op]):
                raise ConfigError(f"config key '{k}': expected a value {word} {meta[op]}, got {v}")
        if "pattern" in meta and not re.match(meta["pattern"], v):
            raise ConfigError(f"config key '{k}': expected letters, digits, '_', '-' or '.', got {describe(v)}")
        if meta.get("model"):
            from .models import MODELS

            if v not in MODELS:
                raise ConfigError(f"config key '{k}': unknown model {v!r}; expected one of {', '.join(MODELS.names())}")
        if "check" in meta:
            meta["check"](v, k)


def plain(obj: Any) -> Any:
    """Dataclasses, mappings and tuples as the plain dicts and lists YAML and JSON write."""
    if hasattr(obj, "__plain__"):
        return plain(obj.__plain__())
    if dataclasses.is_dataclass(obj):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return [plain(v) for v in obj]
    return obj
