"""Artifacts on disk: atomic writes, and the stage store that makes runs resumable.

Every write goes to a temporary file in the target folder, is fsynced, then renamed over the target,
so a killed process never leaves a half-written file under a final name. The :class:`StageStore`
keeps each pipeline stage's output under ``<run>/store/<label>-<key>/``. A stage's key is derived
here, from the keys of the artifacts it consumes and its own slice of the config, never listed by
hand at a call site; a stage is complete when its ``meta.json`` (written last, with a SHA-256 per
file) exists and every checksum matches. The store is one process's view; multi-worker runs wrap
it in :class:`advsal_bench.coordinator.Coordinator`.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from .errors import InputError

STORE_FORMAT = 2  # 2: keys derived from input artifacts (format 1 listed dependencies by hand)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or target.suffix, dir=target.parent)
    except OSError as exc:
        raise _write_error(target, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    except OSError as exc:
        raise _write_error(target, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _write_error(path: Path, exc: OSError) -> InputError:
    # A full disk or a read-only folder is a property of the user's machine, not a bug: exit 2 with the file.
    reason = {errno.ENOSPC: "no space left on device", errno.EROFS: "read-only file system",
              errno.EACCES: "permission denied", errno.EDQUOT: "disk quota exceeded"}.get(exc.errno, exc.strerror or str(exc))
    return InputError(f"{path}: cannot write ({reason})")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def save_keras(model: Any, path: str | os.PathLike[str]) -> None:
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def save_arrays(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})


def load_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    # allow_pickle=False: stored artifacts are data, and a tampered file must not run code.
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (configs as dicts, upstream hashes, array digests)."""
    text = json.dumps(parts, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def array_digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()[:16]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"fingerprint: expected JSON-able parts, got {type(obj).__name__}")


class Status(enum.Enum):
    """What a stage did in this run."""

    COMPUTED = "computed"
    REUSED = "reused"
    RESUMED = "resumed"  # some chunks were found stored and intact, the rest computed


class Keyed(Protocol):
    """Anything with a store key: every artifact a stage consumes."""

    key: str


@dataclass(frozen=True)
class Stage:
    """One stage's identity: a readable label and the key derived from everything it depends on."""

    label: str
    key: str
    dir: Path

    def file(self, name: str) -> Path:
        return self.dir / name


def stage_key(kind: str, inputs: Sequence[Keyed], config: Any) -> str:
    """The key of a stage of ``kind`` on ``inputs`` (their keys, in order) with its ``config`` slice."""
    return fingerprint(STORE_FORMAT, kind, [a.key for a in inputs], config)


class StageStore:
    """Stage outputs under ``root``, keyed by their inputs; reused when complete and intact.

    ``reuse=False`` (``--fresh``) treats every stage as missing and overwrites what it finds.
    """

    def __init__(self, root: str | os.PathLike[str], *, reuse: bool = True,
                 log: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.reuse = reuse
        self.log = log or (lambda msg: None)

    def stage(self, label: str, kind: str, inputs: Sequence[Keyed], config: Any = None) -> Stage:
        key = stage_key(kind, inputs, config)
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)
        return Stage(label, key, self.root / f"{slug}-{key}")

    def load_meta(self, stage: Stage) -> dict[str, Any] | None:
        """The stage's meta if it is complete and every file matches its checksum, else None."""
        if not self.reuse:
            return None
        meta_path = stage.file("meta.json")
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("key") != stage.key:
                raise ValueError("key mismatch")
            for fname, digest in meta["files"].items():
                if sha256_file(stage.file(fname)) != digest:
                    raise ValueError(f"checksum mismatch in {fname}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.log(f"store: {stage.label}: stored artifact is corrupt or incomplete ({exc}); recomputing")
            return None
        return meta

    def written_meta(self, stage: Stage) -> dict[str, Any]:
        """The meta another worker wrote (no checksum pass: it has just written it)."""
        try:
            return json.loads(stage.file("meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"{stage.file('meta.json')}: stage {stage.label} was not stored "
                               f"(is the output directory shared by all workers?) ({exc})") from None

    def begin(self, stage: Stage, *, keep_chunks: bool = False) -> None:
        """Prepare the stage folder for computing: stale or partial outputs go, resumable chunks stay."""
        if stage.dir.exists() and not (keep_chunks and self.reuse):
            shutil.rmtree(stage.dir, ignore_errors=True)
        stage.file("meta.json").unlink(missing_ok=True)
        try:
            stage.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(stage.dir, exc) from None

    def complete(self, stage: Stage, files: list[str], values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record a computed stage: checksummed meta.json last, then the manifest."""
        meta = {"format": STORE_FORMAT, "stage": stage.label, "key": stage.key,
                "files": {f: sha256_file(stage.file(f)) for f in files}, "values": dict(values or {})}
        write_json(stage.file("meta.json"), meta)
        self._update_manifest(stage)
        return meta

    def _update_manifest(self, stage: Stage) -> None:
        path = self.root / "manifest.json"
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {"format": STORE_FORMAT, "stages": {}}
        manifest.setdefault("stages", {})[stage.label] = {"key": stage.key, "dir": stage.dir.name}
        write_json(path, manifest)

    # ---- files of a stage -------------------------------------------------------------------------

    def save_arrays(self, stage: Stage, arrays: Mapping[str, np.ndarray], values: Mapping[str, Any]) -> None:
        files = []
        if arrays:
            save_arrays(stage.file("arrays.npz"), arrays)
            files.append("arrays.npz")
        self.complete(stage, files, values)

    @staticmethod
    def stored_arrays(stage: Stage, meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return load_arrays(stage.file("arrays.npz")) if "arrays.npz" in meta["files"] else {}

    @staticmethod
    def chunk_names(n: int, chunk_size: int) -> list[str]:
        return [f"chunk_{i:05d}.npz" for i in range(max(1, -(-n // chunk_size)))]

    def save_chunk(self, stage: Stage, name: str, arrays: Mapping[str, np.ndarray], values: Mapping[str, Any]) -> None:
        save_arrays(stage.file(name), {**arrays, **{f"value:{k}": np.asarray(v) for k, v in values.items()}})

    def chunk_stored(self, stage: Stage, name: str) -> bool:
        return self.reuse and _readable_chunk(stage.file(name))

    @staticmethod
    def read_chunks(stage: Stage, names: list[str]) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        parts, values = [], []
        for fname in names:
            try:
                raw = load_arrays(stage.file(fname))
            except (OSError, ValueError) as exc:
                raise RuntimeError(f"{stage.file(fname)}: chunk missing or unreadable ({exc})") from None
            values.append({k[6:]: raw.pop(k).item() for k in list(raw) if k.startswith("value:")})
            parts.append(raw)
        return _concat(parts), values


def _readable_chunk(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            for k in z.files:
                z[k]  # noqa: B018 - reading every member checks the zip CRCs
        return True
    except Exception:  # noqa: BLE001 - BadZipFile, EOFError, ValueError: a torn chunk is recomputed
        return False


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys = list(parts[0]) if parts else []
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in keys}
