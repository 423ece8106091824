"""Many hosts: the same load workers placed on several machines, one window, histograms merged exactly.

- :mod:`axon.engines.hosts.clock`: clock offsets (NTP-style, through the scheduler), the start lead,
  and the check that every host's window started together. Pure functions.
- :mod:`axon.engines.hosts.host`: the task that runs on one host (one Dask worker): its share of the
  load on axon's existing python-engine worker processes, started at a common time.
- :mod:`axon.engines.hosts.dask`: the coordinator: connects to a Dask scheduler, places one pinned task
  per host, runs the two-phase start and gathers what came back.

Nothing here is imported unless ``--dask`` / ``--axon-dask`` is given: Dask is an optional extra.
"""
