"""A server module that fails at import: lint must report it, not crash."""

raise RuntimeError("lintcase_broken refuses to import")
