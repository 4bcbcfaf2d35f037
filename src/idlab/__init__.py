"""idlab: measure how many degrees of freedom a learning task really needs."""
import contextlib
import gc
from typing import Iterator

__version__ = "0.1.0"

# Bumped by every change that alters what a run computes or how its result is counted (docs/sweep.md, "Code
# versions"). It is part of every sweep run's key, so a sweep never mixes runs made under different behaviour.
# 2: projection seed follows the run seed; modular val/test split; NaN guard and diverged runs as results;
#    transformer LLID = the head's input; LeNet flatten size for odd intermediate sizes.
RESULTS_VERSION = 2
RESULTS_CHANGES = ("version 2: the projection seed follows the run seed, modular arithmetic has disjoint val and test "
                   "splits, diverged runs count as results, the transformer's LLID layer is the head's input")


@contextlib.contextmanager
def startup_imports() -> Iterator[None]:
    """Import the training stack (torch, Lightning, idlab.run) without the cyclic garbage collector, then freeze
    what exists (gc.freeze, once per process). The import creates about half a million objects that live as long as
    the process: collecting while they are built took 1 s of a 4 s import on the CPU machine, and collecting them
    again while the interpreter exits took 1.3 s. Frozen objects are left out of every later collection, and a
    process forked afterwards does not touch their pages (Python's gc docs recommend freezing before fork)."""
    global _frozen
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        if not _frozen:
            _frozen = True
            gc.freeze()


_frozen = False
