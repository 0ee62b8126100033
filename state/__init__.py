"""Per-key state shapes and the Redis live views analysts read (writers, readers, report, web)."""
