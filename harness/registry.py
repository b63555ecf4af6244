"""One registration point per extension kind.

Each registry maps a short name to an implementation. Implementation modules register themselves on
import, or are named lazily (``register_lazy(name, "package.module")`` for a module that registers them itself,
``"package.module:attribute"`` for one that does not): a lookup then imports that one module, and listing imports
nothing.
"""
from __future__ import annotations

import importlib
import threading
from typing import Callable, Generic, Iterator, TypeVar

from harness.errors import HarnessInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → implementation map for one extension kind (e.g. 'runtime')."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._resolving = threading.RLock()  # one thread imports a lazy member; the others wait for it

    def register(self, name: str, replace: bool = False) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``; a second registration is an error unless ``replace``."""

        def add(obj: T) -> T:
            held = self._items.get(name)
            filling = isinstance(held, _Lazy) and held.module == getattr(obj, "__module__", None)
            if replace and isinstance(held, _Lazy) and not filling:
                self.get(name)  # the built-in's module now, so that importing it later cannot undo the replacement
                held = self._items.get(name)
            if not replace and held is not None and held is not obj and not filling:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def register_lazy(self, name: str, where: str) -> None:
        """Name ``where`` as ``name``'s implementation, imported at its first lookup: "package.module" (it registers
        ``name`` itself when imported) or "package.module:attribute" (that attribute is the implementation)."""
        if name in self._items and self._items[name] != _Lazy(where):
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = _Lazy(where)  # type: ignore[assignment]

    def get(self, name: str) -> T:
        try:
            item = self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise HarnessInputError(f"unknown {self.kind} {name!r} (known: {known})") from None
        if isinstance(item, _Lazy):
            with self._resolving:
                item = self._items[name]
                if isinstance(item, _Lazy):
                    loaded = importlib.import_module(item.module)  # it may register its members itself (filling)
                    if isinstance(self._items[name], _Lazy):
                        attribute = item.where.partition(":")[2]
                        if not attribute:
                            raise ValueError(f"{item.module} did not register the {self.kind} {name!r}")
                        self._items[name] = getattr(loaded, attribute)
                    item = self._items[name]
        return item

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)


class _Lazy:
    """A registry entry not imported yet: ``where`` is "package.module", or "package.module:attribute"."""

    __slots__ = ("where",)

    def __init__(self, where: str) -> None:
        self.where = where

    @property
    def module(self) -> str:
        return self.where.partition(":")[0]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Lazy) and other.where == self.where

    def __hash__(self) -> int:
        return hash(self.where)


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
LAUNCHERS: Registry = Registry("reach")
"""reach (a target profile's ``reach``) → a launcher class with ``for_target(target, with_models)``, following
``harness.launch.base.Launcher``. The built-in reaches are named lazily here: a lookup imports one launcher."""
LAUNCHERS.register_lazy("local", "harness.launch.local:LocalLauncher")
LAUNCHERS.register_lazy("ssh", "harness.launch.ssh:SshLauncher")
LAUNCHERS.register_lazy("emulated", "harness.launch.emulated:EmulatedLauncher")
