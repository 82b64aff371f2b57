"""clipaudit.curate: see ../shared/design/architecture.md; filled by later work."""
