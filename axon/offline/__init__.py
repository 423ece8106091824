"""Stage 1, offline: data (HIGGS or synthetic) -> train (torch MLPs) -> export (ONNX) -> repository.

Nothing here talks to a server. May import only ``axon.records`` (atomic writes) and the
top-level helpers (``axon.errors``, ``axon.names``, ...). torch is imported only by :mod:`~axon.offline.model` and
:mod:`~axon.offline.train`, so benchmarking never needs the training stack.
"""
