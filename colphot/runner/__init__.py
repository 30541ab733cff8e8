"""Many tiles: plan the work and map it over Dask (the only subpackage that imports Dask).

- :mod:`colphot.runner.plan`: find tiles by template, glob or list (local or ``s3://``) and pair
  each with its output part (:class:`~colphot.runner.plan.WorkUnit`);
- :mod:`colphot.runner.refs`: per-tile reference selection with Polars lazy scans (tract
  partition pruning, a sky box pushed down to the Parquet scan);
- :mod:`colphot.runner.run`: :func:`colphot.run`, one Dask task per tile, retries, resume, a
  run manifest.

Dask itself is imported only inside the functions that need it, so importing this package stays
light.
"""
