"""``axon tune``: the Triton configuration that serves the most within the latency budget.

- :mod:`axon.study.tune.space`: the knobs, their values (CLI lists or a TOML file), the candidates;
- :mod:`axon.study.tune.control`: the model-control API (load a candidate, time it, restore the disk config);
- :mod:`axon.study.tune.search`: interleaved rounds, concurrency sweeps that stop early, brute force or
  coordinate search;
- :mod:`axon.study.tune.verdict`: each candidate's operating point and the "beyond noise" rule;
- :mod:`axon.study.tune.report`: the ranked table, the plot, report.md, the winner's config.pbtxt, --apply;
- :mod:`axon.cli.tune`: the CLI face.
"""
