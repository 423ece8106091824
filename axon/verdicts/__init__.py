"""Stage 5, verdicts: budgets per case (:mod:`~axon.verdicts.slo`), run-level comparison of two
result sets, change points over a history.

May import ``axon.records`` and everything below it; never ``axon.study`` or a face.
"""
