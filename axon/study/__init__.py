"""Stage 6, study: many cases planned together and what is written about them.

:mod:`~axon.study.plan` (sweep, A/B, capacity search), :mod:`~axon.study.report` (tables,
plots and report.md), :mod:`~axon.study.tune` (the best server config under the budget). May import
``axon.verdicts``, ``axon.case`` and everything below; never a face (``axon.cli``, the pytest plugin).
"""
