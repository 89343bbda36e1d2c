"""The business core: pure Python, no framework imports (import-linter enforces it)."""
