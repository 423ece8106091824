"""Stage 3, records: what a run leaves behind, typed, and the one way to read and write it.

:mod:`~axon.records.schema` holds the record types and the case label; :mod:`~axon.records.stats`
the HDR histograms; :mod:`~axon.records.results` the one schema-checked reader and writer (with
the rescue path); :mod:`~axon.records.merge` and :mod:`~axon.records.repeats` combine runs.
Sits below the engines (they fill HDR histograms) and above serving and offline. May import
``axon.serving``, ``axon.offline`` and the top-level helpers.
"""
