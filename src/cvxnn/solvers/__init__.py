"""Solvers for the convex programs of cvxnn."""
