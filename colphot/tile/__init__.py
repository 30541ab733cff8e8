"""1. Read a tile: pixels, mask planes, variance, WCS, PSF, calibration."""
