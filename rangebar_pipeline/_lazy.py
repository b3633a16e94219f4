"""Modules imported on first attribute access, so that importing ours does not import them.

>>> pd = lazy_module("pandas")  # nothing imported yet
>>> pd.DataFrame  # doctest: +ELLIPSIS
<class 'pandas...DataFrame'>

Use it as ``if TYPE_CHECKING: import pandas as pd`` / ``else: pd = lazy_module("pandas")``: type
checkers see the real module, the runtime a stand-in that is not registered in ``sys.modules`` (so
libraries that look there, as polars does for pandas, are not misled).

:func:`import_ahead` imports a module in a background thread while the caller works outside the
GIL (the kernel), for a call that needs the module afterwards: the two overlap.
:func:`in_background` runs work (warm-ups: imports of seconds, a context to build) one item after
another on one background thread; :func:`warm_up` queues a named warm-up, :func:`warmed` waits for it.
:func:`in_thread` runs one piece of work on a thread of its own, queued behind nothing.
"""

from __future__ import annotations

import importlib
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from types import ModuleType
from typing import Any, cast


class _LazyModule:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> ModuleType:
    """A stand-in for ``import name`` that imports the module on first attribute access."""
    return cast(ModuleType, _LazyModule(name))  # typed as the module it stands for


def _warm(name: str) -> None:
    with suppress(BaseException):  # the caller's own import reports it (see import_ahead)
        importlib.import_module(name)


@contextmanager
def import_ahead(name: str | None) -> Iterator[None]:
    """Import ``name`` in a background thread during the ``with`` block; joined when it ends.

    For a block that runs outside the GIL (the kernel): the import then costs no time of its own.
    Around Python code the two threads would take turns on the GIL, slowing the block down.

    Only a warm-up: whoever needs the module still imports it (after the block), so an import error
    is raised there, in the caller's thread, as without this. Nothing happens when ``name`` is None
    or already imported.
    """
    if name is None or name in sys.modules:
        yield
        return
    worker = threading.Thread(target=_warm, args=(name,), name=f"rangebar-import-{name}", daemon=True)
    worker.start()
    try:
        yield
    finally:
        worker.join()


class _Background:
    """One daemon thread running queued work in order, and the named warm-ups queued on it.

    One thread for every warm-up: two threads importing at once can deadlock on a circular import
    (``_DeadlockError`` on narwhals, imported by both scikit-learn and great-expectations). A daemon
    thread: a process that ends does not wait for a warm-up it no longer needs. A forked child has
    none of its parent's thread: it starts afresh (:meth:`reset`), else its work would wait forever.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.lock, self.naming = threading.Lock(), threading.Lock()
        self.queue: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.warm_ups: dict[str, Future[object]] = {}

    def submit(self, step: Callable[[], object]) -> Future[object]:
        future: Future[object] = Future()
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._work, args=(self.queue,), name="rangebar-warm-up", daemon=True
                )
                self.thread.start()
            self.queue.put((step, future))
        return future

    @staticmethod
    def _work(steps: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]]) -> None:
        while True:
            step, future = steps.get()
            try:
                future.set_result(step())
            except BaseException as exc:  # kept in the future: the caller repeats the work
                future.set_exception(exc)


_BACKGROUND = _Background()
os.register_at_fork(after_in_child=_BACKGROUND.reset)


def in_background(step: Callable[[], object]) -> Future[object]:
    """Queue ``step`` (a warm-up, or work whose result is needed later) on the background thread;
    its errors stay in the returned future (a warm-up's caller repeats the work and reports them)."""
    return _BACKGROUND.submit(step)


def in_thread(step: Callable[[], object], name: str) -> Future[object]:
    """Run ``step`` on a daemon thread of its own (work that must not wait behind the background
    thread's queue); its errors stay in the returned future."""
    future: Future[object] = Future()

    def run() -> None:
        try:
            future.set_result(step())
        except BaseException as exc:  # kept in the future, raised where it is awaited
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def warm_up(name: str, step: Callable[[], object]) -> Future[object]:
    """Queue the warm-up ``name``, once per process."""
    with _BACKGROUND.naming:
        if name not in _BACKGROUND.warm_ups:
            _BACKGROUND.warm_ups[name] = in_background(step)
        return _BACKGROUND.warm_ups[name]


def warmed(name: str) -> None:
    """Wait for the warm-up ``name`` if one was queued (and every warm-up queued before it), so
    that the caller never imports what the background thread is importing."""
    pending = _BACKGROUND.warm_ups.get(name)
    if pending is not None and threading.current_thread() is not _BACKGROUND.thread:
        pending.exception()
