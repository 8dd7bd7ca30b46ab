"""How many torch threads a computation gets: chosen by timing its steps.

A step of a small network is over in microseconds; torch's intra-op threads
then only wait on each other, and on a machine where other processes hold
cores they wait far longer (a tiny network's step can take a hundred times
longer on two threads than on one). :class:`ThreadChooser` starts on one
thread, times a few steps on more, and keeps them only where they pay. Training
drives it from a skorch callback
(:class:`~sklearn_swag._training.callbacks.ThreadTuner`), prediction from its loop over
blocks of rows (:func:`~sklearn_swag._posterior.draws.particle_outputs`).

The count is the process's, shared by every thread. Only the main thread
changes it, through :func:`set_thread_count` inside :func:`threads_restored`:
a fit or a prediction in another thread (a joblib threading worker, a user's
thread) runs with the count as it finds it, so that it never clobbers the
count of another thread, nor leaves a changed one behind.
"""

from __future__ import annotations

import statistics
import threading
import time
from contextlib import contextmanager

import torch


class ThreadChooser:
    """Choose between one torch thread and ``threads`` by timing steps.

    It starts on one thread. After ``warmup_steps`` steps it times
    ``trial_steps`` steps on one thread and as many on ``threads``, and keeps
    the faster (more threads must save at least 10%). A trial step more than
    ``collapse`` times slower than on one thread ends the trial at once, and
    two such steps in a row while running on ``threads`` go back to one
    thread: where other processes hold cores, intra-op threads wait for each
    other. After a trial that did not pay, the next one comes
    ``retry_after`` steps later, then twice as late, and so on, so that a
    busy machine costs a few slow steps at most.

    Call :meth:`start` first, then :meth:`begin_step` and :meth:`end_step`
    around every step. It sets the process's thread count
    (:func:`set_thread_count`): run it in the main thread only, inside
    :func:`threads_restored`.

    Parameters
    ----------
    threads : int
        The number of threads to try, at least 2.
    trial_steps : int, default=5
        Steps timed per setting in a trial.
    warmup_steps : int, default=3
        Steps before the first timing.
    retry_after : int, default=500
        Steps between a trial that did not pay and the next one; doubles
        every time.
    collapse : float, default=5.0
        A step this many times slower than expected counts as a collapse.

    Attributes
    ----------
    threads_ : int
        The number of threads in use.
    trials_ : list of tuple
        ``(step, seconds per step on one thread, on threads or None)`` of
        every trial, for inspection.
    """

    def __init__(
        self,
        threads: int,
        trial_steps: int = 5,
        warmup_steps: int = 3,
        retry_after: int = 500,
        collapse: float = 5.0,
    ) -> None:
        self.threads = threads
        self.trial_steps = trial_steps
        self.warmup_steps = warmup_steps
        self.retry_after = retry_after
        self.collapse = collapse
        self.threads_ = 1
        self.trials_: list[tuple] = []

    def start(self) -> None:
        """Begin on one thread, with the first trial after the warm-up."""
        self._use(1)
        self._step = 0
        self._phase = "single"
        self._recent: list[float] = []
        self._next_trial = self.warmup_steps + self.trial_steps
        self._retry = self.retry_after
        self._first_trial = True

    def _use(self, threads: int) -> None:
        set_thread_count(threads)
        self.threads_ = threads

    def _back_to_one(self, multi: float | None) -> None:
        self.trials_.append((self._step, self._single, multi))
        self._use(1)
        self._phase = "single"
        self._recent = []
        self._next_trial = self._step + self._retry
        self._retry *= 2

    def begin_step(self) -> None:
        self._start = time.perf_counter()

    def end_step(self) -> None:
        seconds = time.perf_counter() - self._start
        self._step += 1
        if self._phase == "single":
            if self._step > self.warmup_steps:
                self._recent = [*self._recent[-self.trial_steps + 1 :], seconds]
            if self._step >= self._next_trial and len(self._recent):
                self._single = statistics.median(self._recent)
                self._timed: list[float] = []
                self._phase = "trial"
                self._use(self.threads)
        elif self._phase == "trial":
            first = self._first_trial and not self._timed
            self._timed.append(seconds)
            if seconds > self.collapse * self._single and not first:
                self._first_trial = False
                self._back_to_one(seconds)
            elif len(self._timed) > self.trial_steps:  # the first is not timed
                self._first_trial = False
                multi = statistics.median(self._timed[1:])
                if multi < 0.9 * self._single:
                    self.trials_.append((self._step, self._single, multi))
                    self._multi, self._strikes = multi, 0
                    self._phase = "multi"
                else:
                    self._back_to_one(multi)
        else:  # running on several threads: watch for a collapse
            slow = seconds > self.collapse * self._multi
            self._strikes = self._strikes + 1 if slow else 0
            if self._strikes >= 2:
                self._back_to_one(None)


def set_thread_count(threads: int) -> None:
    """Set torch's intra-op thread count: in the main thread only.

    Raises
    ------
    RuntimeError
        In another thread, where the count belongs to the process and a
        change would clobber the main thread's.
    """
    if not in_main_thread():
        raise RuntimeError(
            "Only the main thread changes torch's thread count; "
            f"{threading.current_thread().name} leaves it as it is."
        )
    torch.set_num_threads(threads)


@contextmanager
def threads_restored(threads: int | None = None):
    """A block whose changes of torch's thread count are undone afterwards.

    Yields whether the block may change the count (:func:`set_thread_count`):
    in the main thread. In another thread nothing is set, saved or restored.

    Parameters
    ----------
    threads : int or None, default=None
        The count for the block, in the main thread; None leaves it.

    Yields
    ------
    bool
        Whether the calling thread is the main one.
    """
    if not in_main_thread():
        yield False
        return
    previous = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        yield True
    finally:
        torch.set_num_threads(previous)


def in_main_thread() -> bool:
    """Whether the caller runs in the main thread (where it owns the count)."""
    return threading.current_thread() is threading.main_thread()
