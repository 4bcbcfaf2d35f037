"""Intrinsic-dimension estimators: exact GPU TwoNN, scikit-dimension by name, coding rate."""
from idlab.id.coding_rate import coding_rate, rate_reduction
from idlab.id.estimators import estimate, make_estimator, valid_names
from idlab.id.knn import Neighbours, nearest_neighbours
from idlab.id.twonn import IDEstimate, fit_twonn, two_nearest_distances, twonn, twonn_bootstrap

__all__ = ["IDEstimate", "Neighbours", "coding_rate", "estimate", "fit_twonn", "make_estimator",
           "nearest_neighbours", "rate_reduction", "two_nearest_distances", "twonn", "twonn_bootstrap", "valid_names"]
