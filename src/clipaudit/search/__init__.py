"""Semantic search, vector indexes and policy routes over a curated run."""
