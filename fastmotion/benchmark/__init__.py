"""The benchmark library behind ``fastmotion bench`` and the pytest-benchmark suites in ``bench/``:
the same input makers (from :mod:`fastmotion.ops.registry`), the same provider callables, the same
timing and memory measurement, so a number in a report is the number the suites measure.

Modules: :mod:`.timing` (host clock on CPU, CUDA events with an L2 flush on GPU),
:mod:`.memory` (peak memory of one call), :mod:`.environment` (what every row is stamped with),
:mod:`.ops`, :mod:`.model`, :mod:`.train`, :mod:`.export` (the suites), :mod:`.report`
(results.json, report.md and charts).
"""
