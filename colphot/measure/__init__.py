"""3. Measurement kernels at fixed positions: arrays in, arrays out (numpy and numba only)."""
