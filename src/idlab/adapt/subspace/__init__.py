"""Random-subspace training (Li et al. 2018) and SAID (Aghajanyan et al. 2021): `adapt=subspace`."""
from idlab.adapt.subspace.adaptation import Subspace
from idlab.adapt.subspace.model import SubspaceModel
from idlab.adapt.subspace.selection import SubspaceConfigError

__all__ = ["Subspace", "SubspaceConfigError", "SubspaceModel"]
