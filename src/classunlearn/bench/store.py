"""Where a study keeps its work: hashed artifacts on disk and an SQLite results table.

Every unit of work is keyed by a hash of everything that determines it, so a rerun reuses
what is finished, a killed run resumes, and a changed parameter recomputes only what depends
on it. Writes are atomic (temp file + rename) and each artifact's SHA-256 is checked on read,
so a file cut short by a kill is recomputed, never read as valid.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as np_load
from safetensors.numpy import save as np_save

from classunlearn.checkpoint import _atomic_write, check_writable
from classunlearn.errors import UserError


def unit_key(spec: dict) -> str:
    """A short, stable hash of a JSON-able spec."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class Store:
    """Artifacts (`artifacts/<key>.safetensors` + `.json`) and `results.db` under one folder."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.dir = self.out / "artifacts"
        check_writable(self.dir)
        self.db_path = self.out / "results.db"
        try:
            with self._db() as db:
                db.executescript(
                    """
                    CREATE TABLE IF NOT EXISTS metrics (
                        study TEXT, method TEXT, seed INTEGER, metric TEXT, value REAL,
                        PRIMARY KEY (study, method, seed, metric));
                    CREATE TABLE IF NOT EXISTS units (
                        key TEXT PRIMARY KEY, kind TEXT, label TEXT, wall_s REAL,
                        finished REAL);
                    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
                    """
                )
        except sqlite3.DatabaseError as e:  # not a database, or a disk that is full
            fix = ("free disk space and rerun" if "full" in str(e) else "move the file away and "
                   f"rerun bench: metrics are recomputed from {self.dir}")
            raise UserError(f"cannot use {self.db_path} ({e}); {fix}") from None

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=60)

    # ---- artifacts
    def has(self, key: str) -> bool:
        return self.load(key) is not None

    def load(self, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
        """(arrays, info) of a finished unit, or None if absent or corrupt."""
        tensors, side = self.dir / f"{key}.safetensors", self.dir / f"{key}.json"
        if not (tensors.exists() and side.exists()):
            return None
        try:
            info = json.loads(side.read_text())
            data = tensors.read_bytes()
            if not isinstance(info, dict) or hashlib.sha256(data).hexdigest() != info.get(
                    "sha256"):
                return None
            return np_load(data), info
        except (ValueError, OSError, SafetensorError):
            return None

    def save(self, key: str, arrays: dict[str, np.ndarray], info: dict) -> None:
        data = np_save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
        info = {**info, "sha256": hashlib.sha256(data).hexdigest()}
        try:
            _atomic_write(self.dir / f"{key}.safetensors", data)
            _atomic_write(self.dir / f"{key}.json", json.dumps(info, default=str).encode())
        except OSError as e:
            raise UserError(f"cannot write results to {self.dir}: {e.strerror or e}; free disk "
                            "space and rerun (finished work is kept)") from None
        try:
            with self._db() as db:
                db.execute("INSERT OR REPLACE INTO units VALUES (?, ?, ?, ?, ?)",
                           (key, info.get("kind", ""), info.get("label", ""),
                            float(info.get("wall_s", 0.0)), time.time()))
        except sqlite3.OperationalError as e:  # e.g. "database or disk is full"
            raise UserError(f"cannot write {self.db_path} ({e}); free disk space and rerun "
                            "(finished work is kept)") from None

    # ---- results
    def put_metrics(self, study: str, method: str, seed: int, metrics: dict[str, float]) -> None:
        rows = [(study, method, seed, k, float(v)) for k, v in metrics.items()
                if isinstance(v, int | float)]
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)", rows)

    def replace_metrics(self, rows: list[tuple[str, str, int, str, float]]) -> None:
        """Swap every stored metric for `rows` in one transaction: a kill leaves either the
        old table or the new one, never an empty or half-written one."""
        with self._db() as db:
            db.execute("DELETE FROM metrics")
            db.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)", rows)

    def metrics(self, study: str | None = None) -> list[tuple[str, str, int, str, float]]:
        with self._db() as db:
            q = "SELECT study, method, seed, metric, value FROM metrics"
            if study is None:
                return list(db.execute(q))
            return list(db.execute(q + " WHERE study = ?", (study,)))

    def put_meta(self, key: str, value: object) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                       (key, json.dumps(value, default=str)))

    def get_meta(self, key: str, default: object = None) -> object:
        with self._db() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def unit_times(self) -> list[tuple[str, str, float]]:
        with self._db() as db:
            return list(db.execute("SELECT kind, label, wall_s FROM units"))
