"""Analysis, host side and CI: pure functions over records and outputs — the metric catalogue, comparison, the
gate, Pareto fronts, fidelity. Nothing here starts a process or measures."""
