//! The as-of join of a stream with a table (placeholder; being written).
