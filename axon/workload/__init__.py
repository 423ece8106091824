"""Stage 1b, workload: what one request carries, for any model.

A model's :class:`~axon.workload.signature.Signature` (from its ONNX graph or the served
model's metadata), the inputs built from it (given rows, ``--input-data``, or generated and
seeded), the serialised requests and the local onnxruntime reference answers.

May import ``axon.records`` and the top-level helpers only: offline's repository writer reads
signatures, and the engines and everything above take what it builds, never a model's names.
"""
