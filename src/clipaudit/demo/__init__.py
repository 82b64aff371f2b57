"""The demos: a world pool curated end to end and scored against its planted truths
(``images``: ``clipaudit demo``; ``video``: ``clipaudit demo --video``; ``truth``: the scoring)."""
