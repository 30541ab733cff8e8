"""Table definitions shipped with colphot (installed as ``colphot.catalogs``)."""
