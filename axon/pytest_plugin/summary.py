"""The terminal's axon section: one line per case (the real throughput), the notes, and what a pytest-benchmark gate could see."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from axon.records import repeats


def pytest_configure(config: pytest.Config) -> None:
    config._axon_notes = []  # said once, in the summary: notices, client-bound runs, uncovered cases
    config._axon_cases = []  # one line per measured case


@dataclass(frozen=True)
class CaseLine:
    """What the terminal says of one case: the real throughput, not pytest-benchmark's OPS."""

    name: str
    throughput: str
    p50: str
    p99: str
    engine: str
    client_bound: bool
    verdict: str

    @classmethod
    def of(cls, name: str, runs: list[dict], record: dict, problems: list[str]) -> CaseLine:
        spread = repeats.summarise(runs)
        return cls(
            name,
            spread["throughput_rps"].format(),
            spread["p50_ms"].format(".2f"),
            spread["p99_ms"].format(".2f"),
            record["engine"]["name"],
            record["client"]["client_bound"],
            ("ok" if record["correctness"]["enabled"] else "unchecked")
            if not problems
            else "FAILED: " + problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
        )


def _gate_power(config) -> list[str]:
    """When pytest-benchmark gates (--benchmark-compare-fail), what its runs could tell from noise."""
    session = getattr(config, "_benchmarksession", None)
    checks = getattr(session, "compare_fail", None) or []
    mappings = getattr(session, "compared_mapping", None) or {}
    if not checks or not mappings:
        return []
    from axon.verdicts import benchmark_gate

    saved = {
        name: (bench.get("extra_info") or {}).get("axon") for mapping in mappings.values() for name, bench in mapping.items()
    }
    now = {bench.fullname: bench.extra_info.get("axon") for bench in session.benchmarks if bench}
    return benchmark_gate.power_lines([check.field for check in checks], now, saved)


@pytest.hookimpl(tryfirst=True)  # pytest-benchmark's summary raises on a regression: say this before it
def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    cases = getattr(config, "_axon_cases", [])
    notes = getattr(config, "_axon_notes", [])
    power = _gate_power(config)
    if not cases and not notes and not power:
        return
    terminalreporter.section("axon")
    if cases:
        # pytest-benchmark's OPS column is 1 / mean request latency, not throughput: say the real one.
        repeat = config._axon_settings.repeat
        over = f" (median [min-max] over {repeat} repeats)" if repeat > 1 else ""
        terminalreporter.write_line(f"{'case':<48} {'req/s':>22} {'p50 ms':>20} {'p99 ms':>20} {'engine':>6}  verdict{over}")
        for c in cases:
            flag = " [client-bound]" if c.client_bound else ""
            terminalreporter.write_line(
                f"{c.name[:48]:<48} {c.throughput:>22} {c.p50:>20} {c.p99:>20} {c.engine:>6}  {c.verdict}{flag}"
            )
        bound = sum(c.client_bound for c in cases)
        failing = sum(c.verdict.startswith("FAILED") for c in cases)
        terminalreporter.write_line(f"{len(cases)} case(s): {failing} failing; client-bound: {bound} of {len(cases)} cases")
    for note in notes:
        terminalreporter.write_line(note)
    for line in power:
        terminalreporter.write_line(line)
