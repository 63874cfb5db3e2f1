"""Resilience experiments: each test injects faults into the cluster under load and
ends in one verdict with the numbers behind it. Run them with ``make experiments``
(or ``pytest experiments/`` once a cluster is up)."""
