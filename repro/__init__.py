"""Reproductions of the seed papers' headline results: plans, runner, packing, figures and docs/results.md."""
