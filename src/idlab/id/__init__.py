"""Intrinsic-dimension estimators: exact GPU TwoNN, GRIDE and ID vs scale, overlap, skdim by name, coding rate."""
from idlab.id.coding_rate import coding_rate, rate_reduction
from idlab.id.estimators import estimate, make_estimator, valid_names
from idlab.id.knn import Neighbours, nearest_neighbours
from idlab.id.multiscale import Scaling, gride, id_scaling, neighbourhood_overlap
from idlab.id.twonn import (
    IDEstimate, Neighbourhoods, distinct_search, fit_twonn, two_nearest_distances, twonn, twonn_bootstrap,
)

__all__ = ["IDEstimate", "Neighbourhoods", "Neighbours", "Scaling", "coding_rate", "distinct_search", "estimate",
           "fit_twonn", "gride", "id_scaling", "make_estimator", "nearest_neighbours", "neighbourhood_overlap",
           "rate_reduction", "two_nearest_distances", "twonn", "twonn_bootstrap", "valid_names"]
