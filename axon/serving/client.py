"""Plain tritonclient calls for checks and tests (not the load generator's timed path)."""

from __future__ import annotations

import numpy as np

from axon.errors import ServerError
from axon.offline.export import INPUT_NAME, OUTPUT_NAME

CLIENT_TIMEOUT_S = 10.0


def infer(
    grpc_url: str,
    model: str,
    rows: np.ndarray,
    timeout_s: float = CLIENT_TIMEOUT_S,
    ssl: bool = False,
    headers=None,
    ca_file: str | None = None,
) -> np.ndarray:
    """Send ``rows`` as one request; return the output array. Server errors become ServerError."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    rows = np.ascontiguousarray(rows)
    tensor = grpcclient.InferInput(INPUT_NAME, list(rows.shape), np_to_triton_dtype(rows.dtype))
    tensor.set_data_from_numpy(rows)
    with grpcclient.InferenceServerClient(grpc_url, ssl=ssl, root_certificates=ca_file if ssl else None) as client:
        try:
            result = client.infer(
                model, [tensor], outputs=[grpcclient.InferRequestedOutput(OUTPUT_NAME)], client_timeout=timeout_s, headers=headers
            )
        except InferenceServerException as exc:
            raise ServerError(f"inference on {model} at {grpc_url} failed: {exc.message()}") from None
    return result.as_numpy(OUTPUT_NAME)
