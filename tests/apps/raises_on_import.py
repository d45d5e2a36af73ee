"""A module that fails while being imported, like an app reading missing settings."""

raise RuntimeError("DATABASE_URL is not set")
