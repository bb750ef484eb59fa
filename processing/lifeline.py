"""Helper processes die with the process they work for.

A SIGKILLed ``smartpurse process`` cannot shut its verifying worker down, and multiprocessing's
forkserver and resource tracker outlive it: left running (parent 1), they keep the dead command's
stdout and stderr open, so whoever waits for its output waits for ever. Linux's ``PR_SET_PDEATHSIG``
has the kernel kill a process when its parent dies. The importing process arms it in its forkserver
(this module is the forkserver's preload: ``forkserver_context``) and in each worker the forkserver
forks (``arm``, the pool's initializer), so importer → forkserver → worker unwinds; the resource
tracker then sees its pipe close and exits by itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
from multiprocessing.context import BaseContext
from pathlib import Path

PR_SET_PDEATHSIG = 1
_PRELOAD_FOR = "SMARTPURSE_LIFELINE_FOR"  # the pid whose forkserver this module arms when it is preloaded


def arm() -> None:
    """Be killed by the kernel when the parent process dies (Linux; elsewhere nothing happens).

    A worker forked just before the importing process was killed arms itself after its forkserver
    is gone already; it then sees that the importing process is gone and exits at once."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    prctl = getattr(libc, "prctl", None)
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    owner = os.environ.get(_PRELOAD_FOR)
    if owner is not None and not _alive(int(owner)):  # it died before we were armed: follow it now
        os._exit(1)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs: a killed process its parent has not reaped yet (a zombie) does not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def forkserver_context() -> BaseContext:
    """The forkserver context, its server armed to die with this process."""
    context = multiprocessing.get_context("forkserver")
    os.environ[_PRELOAD_FOR] = str(os.getpid())
    context.set_forkserver_preload([__name__])
    return context


if os.environ.get(_PRELOAD_FOR) == str(os.getppid()):
    arm()  # preloaded by the forkserver of that process: die with it
