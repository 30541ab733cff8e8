"""5. Store forced-source tables as hive-partitioned Parquet and open them again."""
