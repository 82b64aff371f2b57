"""``clipaudit ablate``: does a rules pack help? Train the small CLIP on the raw pool and on
each curated pool with equal compute and the same seeds, then compare on the world benchmarks.

:func:`clipaudit.ablate.run.run_ablation` runs it; the modules beside it hold the parts
(pool decoding, curation per pack, training one arm, benchmarks, paired statistics, report).
"""
