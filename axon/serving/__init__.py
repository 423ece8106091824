"""Stage 2, serving: the Triton that answers, whoever runs it.

The embedded tritonserver, the container (docker compose) and an external URL behind one
interface (:mod:`~axon.serving.backends`); Triton's Prometheus counters
(:mod:`~axon.serving.triton_metrics`); a one-request client (:mod:`~axon.serving.client`).
May import ``axon.offline``, ``axon.records`` and the top-level helpers, nothing above.
"""
