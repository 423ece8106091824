"""Records: what a run leaves behind, typed, and the one way to read and write it.

:mod:`~axon.records.schema` holds the record types and the case label; :mod:`~axon.records.stats`
the HDR histograms; :mod:`~axon.records.results` the one schema-checked reader and writer (with
the rescue path); :mod:`~axon.records.merge` and :mod:`~axon.records.repeats` combine runs.
The bottom layer, under every stage (engines fill HDR histograms, the offline stage writes
atomically): may import only the top-level helpers.
"""
