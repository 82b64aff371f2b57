"""clipaudit.world: see ../shared/design/architecture.md; filled by later work."""
