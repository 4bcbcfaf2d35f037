"""idlab: measure how many degrees of freedom a learning task really needs."""

__version__ = "0.1.0"
