"""Many tiles: plan the work and map it over Dask (the only subpackage that imports Dask)."""
