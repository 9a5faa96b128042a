"""Artifacts on disk: atomic writes, and the stage store that makes runs resumable.

Every write goes to a temporary file in the target folder, is fsynced, then renamed over the target,
so a killed process never leaves a half-written file under a final name. The :class:`StageStore`
keeps each pipeline stage's output under ``<run>/store/<stage>-<hash>/``, where the hash covers
exactly the config and upstream artifacts the stage depends on; a stage is complete when its
``meta.json`` (written last, with a SHA-256 per file) exists and every checksum matches.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .errors import InputError

STORE_FORMAT = 1


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


@dataclass(frozen=True)
class Stage:
    """One stage's identity: a readable name and the hash of everything it depends on."""

    name: str
    key: str
    dir: Path

    def file(self, name: str) -> Path:
        return self.dir / name


class StageStore:
    """Stage outputs keyed by their inputs' hash; reused when complete and intact.

    ``reuse=False`` (``--fresh``) recomputes every stage and overwrites what it finds. ``report``
    records, per stage, whether it was ``computed``, ``reused`` or ``resumed`` (some chunks reused).
    """

    def __init__(self, root: str | os.PathLike[str], *, reuse: bool = True, log: Callable[[str], None] | None = None,
                 worker: tuple[int, int] = (0, 1), sync: Callable[[], None] | None = None) -> None:
        self.root = Path(root)
        self.reuse = reuse
        self.log = log or (lambda msg: None)
        # Multi-worker runs: chunked stages are split by chunk index, each worker writing its own chunks;
        # whole stages (a model, a few arrays) are computed and written by worker 0 and loaded by the
        # others. ``sync`` (a barrier across workers) keeps anyone from reading what is not yet written.
        self.index, self.count = worker
        self.writer = self.index == 0
        self.sync = sync or (lambda: None)
        self.report: dict[str, str] = {}

    # ---- identity -------------------------------------------------------------------------------

    def stage(self, name: str, *deps: Any) -> Stage:
        key = fingerprint(STORE_FORMAT, name, *deps)
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)
        return Stage(name, key, self.root / f"{slug}-{key}")

    # ---- completion -------------------------------------------------------------------------------

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
            self.log(f"store: {stage.name}: stored artifact is corrupt or incomplete ({exc}); recomputing")
            return None
        return meta

    def complete(self, stage: Stage, files: list[str], values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record a computed stage (worker 0 only): checksummed meta.json last, then the manifest."""
        meta = {"format": STORE_FORMAT, "stage": stage.name, "key": stage.key,
                "files": {f: sha256_file(stage.file(f)) for f in files}, "values": dict(values or {})}
        write_json(stage.file("meta.json"), meta)
        self._update_manifest(stage)
        self.report.setdefault(stage.name, "computed")
        return meta

    def _update_manifest(self, stage: Stage) -> None:
        path = self.root / "manifest.json"
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {"format": STORE_FORMAT, "stages": {}}
        manifest.setdefault("stages", {})[stage.name] = {"key": stage.key, "dir": stage.dir.name}
        write_json(path, manifest)

    def begin(self, stage: Stage, *, keep_chunks: bool = False) -> None:
        """Prepare the stage folder for computing: stale or partial outputs go, resumable chunks stay."""
        if stage.dir.exists() and not (keep_chunks and self.reuse):
            shutil.rmtree(stage.dir, ignore_errors=True)
        stage.file("meta.json").unlink(missing_ok=True)
        try:
            stage.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(stage.dir, exc) from None

    # ---- stage kinds --------------------------------------------------------------------------------

    def arrays(self, stage: Stage, compute: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]]
               ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """A stage whose output is a few arrays plus JSON-able values."""
        self.sync()
        meta = self.load_meta(stage)
        if meta is not None:
            try:
                arrays = self._stored_arrays(stage, meta)
                self.report.setdefault(stage.name, "reused")
                return arrays, meta["values"]
            except (OSError, ValueError) as exc:
                self.log(f"store: {stage.name}: cannot read stored arrays ({exc}); recomputing")
        if not self.writer:
            self.sync()  # worker 0 computes and stores it meanwhile
            meta = self._written_meta(stage)
            self.report.setdefault(stage.name, "computed")
            return self._stored_arrays(stage, meta), meta["values"]
        self.begin(stage)
        arrays, values = compute()
        files = []
        if arrays:
            save_arrays(stage.file("arrays.npz"), arrays)
            files.append("arrays.npz")
        self.complete(stage, files, values)
        self.sync()
        return arrays, values

    @staticmethod
    def _stored_arrays(stage: Stage, meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return load_arrays(stage.file("arrays.npz")) if "arrays.npz" in meta["files"] else {}

    def _written_meta(self, stage: Stage) -> dict[str, Any]:
        try:
            return json.loads(stage.file("meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"{stage.file('meta.json')}: worker 0 did not store stage {stage.name} "
                               f"(is the output directory shared by all workers?) ({exc})") from None

    def chunked(
        self,
        stage: Stage,
        n: int,
        chunk_size: int,
        compute_chunk: Callable[[int, int], tuple[dict[str, np.ndarray], dict[str, Any]]],
    ) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        """A stage computed over ``n`` items in chunks; a killed run resumes at the first missing chunk.

        Chunk ``i`` covers items ``[i*chunk_size, min(n, (i+1)*chunk_size))`` and is written atomically
        as soon as it is done. In a multi-worker run, worker k computes the chunks i with
        i % workers == k and then reads everyone's.
        """
        self.sync()
        meta = self.load_meta(stage)
        n_chunks = max(1, -(-n // chunk_size))
        names = [f"chunk_{i:05d}.npz" for i in range(n_chunks)]
        if meta is not None:
            try:
                parts = [load_arrays(stage.file(f)) for f in names]
                self.report.setdefault(stage.name, "reused")
                return _concat(parts), meta["values"]["chunks"]
            except (OSError, ValueError, KeyError) as exc:
                self.log(f"store: {stage.name}: cannot read stored chunks ({exc}); recomputing")
        if self.writer:
            self.begin(stage, keep_chunks=True)
        self.sync()
        reused = 0
        for i, fname in enumerate(names):
            if i % self.count != self.index:
                continue
            if self.reuse and _readable_chunk(stage.file(fname)):
                reused += 1
                continue
            start, stop = i * chunk_size, min(n, (i + 1) * chunk_size)
            arrays, values = compute_chunk(start, stop)
            save_arrays(stage.file(fname), {**arrays, **{f"value:{k}": np.asarray(v) for k, v in values.items()}})
            self.log(f"store: {stage.name}: chunk {i + 1}/{n_chunks} stored")
        self.sync()
        result = self._finish_chunked(stage, names, reused)
        self.sync()
        return result

    def _finish_chunked(self, stage: Stage, names: list[str], reused: int
                        ) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        parts, values = [], []
        for fname in names:
            try:
                raw = load_arrays(stage.file(fname))
            except (OSError, ValueError) as exc:
                raise RuntimeError(f"{stage.file(fname)}: chunk missing or unreadable ({exc})") from None
            values.append({k[6:]: raw.pop(k).item() for k in list(raw) if k.startswith("value:")})
            parts.append(raw)
        if self.writer:
            self.complete(stage, names, {"chunks": values})
        self.report.setdefault(stage.name, "computed")
        if reused:
            self.report[stage.name] = f"resumed ({reused} of {len(names)} chunks reused)"
            self.log(f"store: {stage.name}: resumed, {reused} of {len(names)} chunks reused")
        return _concat(parts), values

    def model(self, stage: Stage, build: Callable[[], Any], load: Callable[[Path], Any], *,
              collective: bool = False) -> Any:
        """A stage whose output is one Keras model (saved as ``model.keras``).

        ``collective``: every worker runs ``build`` (training spread over all workers), worker 0
        stores the result and every worker returns the stored model as ``load`` gives it, so every
        worker goes on with the same weights on its own devices. Otherwise worker 0 builds alone.
        """
        self.sync()
        meta = self.load_meta(stage)
        if meta is not None:
            try:
                model = load(stage.file("model.keras"))
                self.report.setdefault(stage.name, "reused")
                return model
            except Exception as exc:  # noqa: BLE001 - any unreadable stored model is recomputed
                self.log(f"store: {stage.name}: cannot load the stored model ({type(exc).__name__}); recomputing")
        if not self.writer and not collective:
            self.sync()  # worker 0 trains and stores it meanwhile
            self._written_meta(stage)  # a clear error where worker 0 stored nothing
            self.report.setdefault(stage.name, "computed")
            return load(stage.file("model.keras"))
        if self.writer:
            self.begin(stage)
        model = build()
        if self.writer:
            save_keras(model, stage.file("model.keras"))
            self.complete(stage, ["model.keras"])
        self.sync()
        if collective and self.count > 1:
            self._written_meta(stage)
            self.report.setdefault(stage.name, "computed")
            return load(stage.file("model.keras"))
        return model


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
    keys = [k for k in parts[0] if not k.startswith("value:")] if parts else []
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in keys}
