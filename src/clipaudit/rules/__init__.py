"""clipaudit.rules: see ../shared/design/architecture.md; filled by later work."""
