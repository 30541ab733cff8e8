"""2. Select reference objects for a tile and place them on its pixels."""
