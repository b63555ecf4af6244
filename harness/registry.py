"""One registration point per extension kind.

Each registry maps a short name to an implementation. Implementation modules register themselves on
import; heavy libraries are imported only when an implementation is used, so listing is cheap.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from harness.errors import HarnessInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → implementation map for one extension kind (e.g. 'runtime')."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, replace: bool = False) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``; a second registration is an error unless ``replace``."""

        def add(obj: T) -> T:
            if not replace and name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise HarnessInputError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)


# The registries. Models come from files in models/, targets from TOML files in targets/.
MODELS: Registry = Registry("model")
EXPORTERS: Registry = Registry("exporter")
RUNTIMES: Registry = Registry("runtime")
COMPRESSORS: Registry = Registry("compressor")
ENERGY_PROBES: Registry = Registry("energy probe")
"""name → class; instances are made with (config mapping, root path for sysfs readers) (``harness.energy``)."""
SEARCH_KNOBS: Registry = Registry("search knob")
"""name → class with ``propose(state) -> [Candidate]``: what ``harness optimize`` turns (``harness.run.knobs``)."""
OP_PROFILERS: Registry = Registry("op profiler")
"""runtime name → ``profile(runtime, artifact, inputs, runs) -> OpProfile`` (``harness.profiling``)."""
