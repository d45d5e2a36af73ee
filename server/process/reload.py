"""--reload: watch the source files with watchfiles (the plexicorn[reload] extra), in a thread,
and tell the supervisor's event loop which files changed."""

from __future__ import annotations

import asyncio
import logging
import threading
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Callable

from ..config import Config, ConfigError

logger = logging.getLogger("plexicorn.error")


class ReloadWatcher:
    def __init__(self, config: Config, on_change: Callable[[list[str]], None]) -> None:
        try:
            import watchfiles
        except ImportError:
            raise ConfigError("--reload needs watchfiles: pip install 'plexicorn[reload]'") from None
        self._watchfiles: Any = watchfiles
        self.directories = [Path(directory).resolve() for directory in config.reload_dir or (config.app_dir,)]
        for directory in self.directories:
            if not directory.is_dir():
                raise ConfigError(f"--reload-dir {str(directory)!r} is not a directory")
        self.include = config.reload_include
        self.exclude = config.reload_exclude
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # watchfiles' own filter: version control, caches, editors' swap files.
        self._default_filter = watchfiles.DefaultFilter()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._watch, args=(loop,), name="plexicorn-reload", daemon=True)
        self._thread.start()
        logger.info("Reloading on changes to %s in %s", ", ".join(self.include),
                    ", ".join(str(directory) for directory in self.directories))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def wanted(self, path: str) -> bool:
        file = Path(path)
        names = [file.name] + [str(file.relative_to(d)) for d in self.directories if file.is_relative_to(d)]
        def matches(patterns: tuple[str, ...]) -> bool:
            return any(fnmatch(name, pattern) for pattern in patterns for name in names)
        return matches(self.include) and not matches(self.exclude)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        changes_of = self._watchfiles.watch(
            *self.directories, stop_event=self._stop, raise_interrupt=False,
            watch_filter=lambda change, path: self._default_filter(change, path) and self.wanted(path))
        for changes in changes_of:
            paths = sorted({path for _, path in changes})
            loop.call_soon_threadsafe(self._on_change, paths)
