"""Stopping every group of a fit when the fit fails or is interrupted.

Ctrl-C (``KeyboardInterrupt``) reaches the main thread only, and a group that
fails leaves the others training. Groups in threads of this process (joblib's
threading backend, a dask cluster of threads) would train on until their work
is done, and a process that exits while torch runs in them aborts.
:class:`StopSignal` is a fit's signal that its groups check between batches
(:class:`~sklearn_swag._training.callbacks.StopCheck`): the fitting thread sets
it when the dispatch of the groups fails, waits until every group running in
this process has stopped, and only then lets the exception go on.

Groups in other processes hold a copy that never fires; joblib ends them
itself. The loky and multiprocessing backends end their worker processes.
The dask backend forgets its tasks: dask cannot stop a task that runs, so a
group already training on a worker process trains to its end there and its
result is dropped (the fitting process is not held up, and exits normally).
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

#: The signals of the fits running in this process, by token: a copy of a
#: signal made in this process (pickled for a task of a cluster of threads) is
#: the signal itself.
_SIGNALS: weakref.WeakValueDictionary[str, StopSignal] = weakref.WeakValueDictionary()


class FitStopped(BaseException):
    """Raised in a group whose fit was stopped; the fit raises its own error."""


class StopSignal:
    """A fit's signal to its groups to stop, and a count of the groups running.

    Every group runs inside :meth:`running` and calls :meth:`check` between
    its batches; the fitting thread calls :meth:`stop`, which returns once
    no group runs any more. A signal pickles as its token: in this process
    the copy is the signal (while it is :meth:`registered`), elsewhere a
    signal that is never set.
    """

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self._condition = threading.Condition()
        self._stopped = False
        self._running = 0

    def __reduce__(self):
        return _signal_for, (self.token,)

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopped

    @contextmanager
    def registered(self) -> Iterator[StopSignal]:
        """A block in which copies made in this process are this signal."""
        _SIGNALS[self.token] = self
        try:
            yield self
        finally:
            _SIGNALS.pop(self.token, None)

    @contextmanager
    def running(self) -> Iterator[None]:
        """A block in which a group trains; it does not start once stopped.

        Raises
        ------
        FitStopped
            When the signal is set already.
        """
        with self._condition:
            if self._stopped:
                raise FitStopped
            self._running += 1
        try:
            yield
        finally:
            with self._condition:
                self._running -= 1
                self._condition.notify_all()

    def check(self) -> None:
        """Raise :class:`FitStopped` once the signal is set."""
        if self._stopped:
            raise FitStopped

    def stop(self) -> None:
        """Set the signal and wait until no group of this process runs.

        A group stops at its next batch, so this waits for one batch of each
        at most; a second Ctrl-C interrupts the wait.
        """
        with self._condition:
            self._stopped = True
            self._condition.wait_for(lambda: self._running == 0)


def _signal_for(token: str) -> StopSignal:
    """The signal of ``token`` in this process, or a new one never set."""
    signal = _SIGNALS.get(token)
    if signal is None:
        signal = StopSignal()
        signal.token = token
    return signal


@contextmanager
def stopping_on_failure() -> Iterator[StopSignal]:
    """A block that dispatches a fit's groups, with their new stop signal: on
    any exception (Ctrl-C included), the groups are stopped and waited for
    before it goes on."""
    signal = StopSignal()
    with signal.registered():
        try:
            yield signal
        except BaseException:
            signal.stop()
            raise
