"""Named counters that threads may add to at once (an executor's callbacks and a writer thread)."""

from __future__ import annotations

import threading


class Tally:
    """Counters by name, each add under one lock; the names are fixed at construction."""

    def __init__(self, *names: str) -> None:
        self.lock = threading.Lock()
        self._counts = dict.fromkeys(names, 0)

    def add(self, name: str, n: int = 1) -> None:
        """Add n to counter `name`; KeyError for a name not given at construction."""
        with self.lock:
            if name not in self._counts:
                raise KeyError(f"no counter '{name}': expected one of {', '.join(self._counts)}")
            self._counts[name] += n

    def __getitem__(self, name: str) -> int:
        """The current value of counter `name`."""
        with self.lock:
            return self._counts[name]
