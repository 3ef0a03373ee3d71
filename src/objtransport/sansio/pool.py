"""Pool bookkeeping for one endpoint, without I/O (in the manner of httpcore's pool).

``checkout`` answers what to do: use a connection (``Assign``), open one in a reserved slot
(``Open``), or wait (``Wait``). The async caller does the I/O and reports back with
``opened`` / ``open_failed`` / ``release`` / ``remove``. Never more than ``size`` connections
(ready + opening) exist.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Assign", "Open", "PoolAction", "PoolBookkeeper", "Wait"]


@dataclass(frozen=True, slots=True)
class Assign:
    conn_id: int


@dataclass(frozen=True, slots=True)
class Open:
    slot: int


@dataclass(frozen=True, slots=True)
class Wait:
    pass


PoolAction = Assign | Open | Wait


class PoolBookkeeper:
    def __init__(self, size: int, idle_timeout: float) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.idle_timeout = idle_timeout
        self._in_flight: dict[int, int] = {}  # ready conn -> bytes in flight
        self._last_used: dict[int, float] = {}
        self._opening: set[int] = set()
        self._next_slot = 0

    def __len__(self) -> int:
        return len(self._in_flight) + len(self._opening)

    def __repr__(self) -> str:
        ready = ", ".join(f"{c}:{b}B" for c, b in self._in_flight.items())
        return f"<PoolBookkeeper size={self.size} ready=[{ready}] opening={len(self._opening)}>"

    @property
    def ready_ids(self) -> list[int]:
        return list(self._in_flight)

    @property
    def opening_count(self) -> int:
        return len(self._opening)

    def in_flight(self, conn_id: int) -> int:
        """Bytes counted in flight on the ready connection ``conn_id`` (0 if unknown)."""
        return self._in_flight.get(conn_id, 0)

    def checkout(self, nbytes: int, now: float) -> PoolAction:
        """Decide for one send of ``nbytes``; an ``Assign`` counts the bytes as in flight."""
        idle = [c for c, b in self._in_flight.items() if b == 0]
        if idle:
            return self._assign(min(idle, key=self._last_used.__getitem__), nbytes, now)
        if len(self) < self.size:
            self._next_slot += 1
            self._opening.add(self._next_slot)
            return Open(self._next_slot)
        if self._in_flight:
            return self._assign(min(self._in_flight, key=self._in_flight.__getitem__),
                                nbytes, now)
        return Wait()

    def _assign(self, conn_id: int, nbytes: int, now: float) -> Assign:
        self._in_flight[conn_id] += nbytes
        self._last_used[conn_id] = now
        return Assign(conn_id)

    def opened(self, slot: int, conn_id: int, now: float) -> None:
        self._opening.discard(slot)
        self._in_flight[conn_id] = 0
        self._last_used[conn_id] = now

    def open_failed(self, slot: int) -> None:
        self._opening.discard(slot)

    def release(self, conn_id: int, nbytes: int, now: float) -> None:
        if conn_id in self._in_flight:
            self._in_flight[conn_id] = max(0, self._in_flight[conn_id] - nbytes)
            self._last_used[conn_id] = now

    def remove(self, conn_id: int) -> None:
        self._in_flight.pop(conn_id, None)
        self._last_used.pop(conn_id, None)

    def expire_idle(self, now: float) -> list[int]:
        """Remove and return the ready connections unused for ``idle_timeout``."""
        out = [c for c, b in self._in_flight.items()
               if b == 0 and now - self._last_used[c] >= self.idle_timeout]
        for c in out:
            self.remove(c)
        return out

    def next_deadline(self) -> float | None:
        times = [self._last_used[c] for c, b in self._in_flight.items() if b == 0]
        return min(times) + self.idle_timeout if times else None
