"""The report of a study or of any axon results file: report.md and the plots beside it.

One module per job: :mod:`.selection` (which runs each part describes), :mod:`.tables`
(markdown), :mod:`.style` and :mod:`.plots` (the figures), :mod:`.paths` (the trigger-path
section), :mod:`.document` (report.md, and reading and writing the files). The one entry point,
:func:`write_report`, is named here; everything else is imported from its own module.
"""

from axon.study.report.document import write_report

__all__ = ["write_report"]
