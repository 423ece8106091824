"""``axon tune``: the Triton configuration that serves the most within the latency budget.

- :mod:`axon.study.tune.space`: the knobs, their values (CLI lists or a TOML file), the candidates;
- :mod:`axon.study.tune.control`: the model-control API (load a candidate, time it, restore the disk config);
- :mod:`axon.study.tune.search`: interleaved rounds, concurrency sweeps that stop early, brute force or
  coordinate search;
- :mod:`axon.study.tune.verdict`: each candidate's operating point and the screen (Holm-Šidák over every candidate);
- :mod:`axon.study.tune.confirm`: the head-to-head against the default that crowns the screen's nominee;
- :mod:`axon.study.tune.report`: the ranked table, the plot, report.md, the winner's config.pbtxt, --apply;
- :mod:`axon.cli.tune`: the CLI face.
"""

from __future__ import annotations

# Here, not in verdict/confirm, so that the CLI's parser can show them without importing scipy.
ALPHA = 0.05  # the family-wise level: the chance of crowning a candidate no better than the default
CONFIRM_PAIRS = 10  # head-to-head pairs: benchmarks/tune_verdict.py measured its power on recorded noise
