"""Database access: models, engines, the embedded server and migrations."""
