"""Model names and architectures, without importing torch.

Benchmarking an existing model needs these names but not the training stack, so they live
apart from :mod:`axon.offline.model`.
"""

from __future__ import annotations

# name -> hidden layer sizes. v1 is the small trigger model, v2 the larger one; v3 (optional,
# `axon train --models v1,v2,v3`, ~410k parameters) is big enough that running it in-process
# costs a CPU client more than a remote call does, so the direct-vs-service break-even shows.
ARCHITECTURES: dict[str, tuple[int, ...]] = {"v1": (64, 32), "v2": (128, 128, 64), "v3": (512, 512, 256)}
DEFAULT_VERSIONS = ("v1", "v2")
# The compute-bound point-cloud tagger (axon.offline.pointcloud), trained beside the MLPs on
# request (`axon train --models v1,v2,pn`): several inputs, ~0.36 M parameters.
POINT_CLOUD_VERSION = "pn"
VERSIONS = (*ARCHITECTURES, POINT_CLOUD_VERSION)  # every model `axon train` can build
MODEL_PREFIX = "particle_classifier_"


def model_name(version: str) -> str:
    """The Triton model name for an architecture, e.g. ``particle_classifier_v1``."""
    return MODEL_PREFIX + version


DEFAULT_MODEL = model_name("v1")  # the trigger model: what a command measures unless told otherwise
DEFAULT_MODELS = tuple(model_name(v) for v in DEFAULT_VERSIONS)


def served_name(text: str) -> str:
    """What a user typed (``v1`` or ``particle_classifier_v1``) as a Triton model name.

    Anything else is passed through unchanged: an external server may serve other models.
    """
    version = text.removeprefix(MODEL_PREFIX)
    return model_name(version) if version in VERSIONS else text
