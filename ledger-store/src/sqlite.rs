//! The embedded adapter: SQLite in WAL mode, one writer thread with group commit.
