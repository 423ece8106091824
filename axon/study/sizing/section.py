"""The study report's sizing section: per model and mode, what one server carries at a few client times.

The study does not know the trigger's own work per event, so the section shows the cores one
server carries at 1, 10 and 100 ms of it (the same arithmetic as ``axon size``, headroom 20%),
and names the command that sizes a farm with the user's numbers.
"""

from __future__ import annotations

from axon.errors import AxonError
from axon.names import MODEL_PREFIX
from axon.study.sizing import arithmetic, measured

CLIENT_MS = (1.0, 10.0, 100.0)


def markdown(runs: list[dict]) -> str | None:
    """The section's body, or None where the records hold no capacity measurement."""
    rows = []
    for subject in measured.subjects(runs):
        for mode in ("on", "off"):
            try:
                m = measured.measured(runs, subject, mode, None, "this study")
            except AxonError:
                continue  # a mode or part not measured (--engine native without Poisson, say): left out
            cores = [arithmetic.size(m, arithmetic.Given(client_ms=t))["cores_per_server"][0] for t in CLIENT_MS]
            saved = arithmetic.size(m, arithmetic.Given(client_ms=CLIENT_MS[1]))["saved_ms_per_event"]
            rows.append(
                f"| {subject.removeprefix(MODEL_PREFIX)} | {mode} | {m['capacity_eps'].value:,.0f} | {m['service_ms'].value:.3f} | "
                + ("–" if m["direct_ms"] is None else f"{m['direct_ms'].value:.3f}")
                + " | "
                + " | ".join(f"{c:,.1f}" for c in cores)
                + " | "
                + ("–" if saved is None else f"{saved[0]:+.3f}")
                + " |"
            )
    if not rows:
        return None
    head = (
        "| model | batching | capacity within p99, events/s | client CPU/event offloaded, ms | in-process, ms | "
        + " | ".join(f"cores per server at {t:g} ms" for t in CLIENT_MS)
        + " | CPU saved per event, ms |"
    )
    return "\n".join(
        [
            head,
            "|" + "---|" * 2 + "---:|" * (4 + len(CLIENT_MS)),
            *rows,
            "",
            "_cores one server carries within the p99 budget = capacity × 80% (20% headroom) × (the trigger's other work per event + the client CPU "
            "of an offloaded call); a negative saving: the model costs the client less in-process than a remote call. "
            "`axon size <this folder> --client-ms-per-event MS --cores N` sizes a farm with your numbers (docs/sizing.md)._",
        ]
    )
