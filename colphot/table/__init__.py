"""4. Build the forced-source table from a tile and its references."""
