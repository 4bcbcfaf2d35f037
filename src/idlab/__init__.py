"""idlab: measure how many degrees of freedom a learning task really needs."""

__version__ = "0.1.0"

# Bumped by every change that alters what a run computes or how its result is counted (docs/sweep.md, "Code
# versions"). It is part of every sweep run's key, so a sweep never mixes runs made under different behaviour.
# 2: projection seed follows the run seed; modular val/test split; NaN guard and diverged runs as results;
#    transformer LLID = the head's input; LeNet flatten size for odd intermediate sizes.
RESULTS_VERSION = 2
RESULTS_CHANGES = ("version 2: the projection seed follows the run seed, modular arithmetic has disjoint val and test "
                   "splits, diverged runs count as results, the transformer's LLID layer is the head's input")
