"""CLI subcommands (thin wrappers over the library)."""
