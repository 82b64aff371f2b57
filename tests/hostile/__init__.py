"""A catalogue of hostile inputs, faults and bad configurations, shared by the reliability
tests (``tests/test_reliability_*.py``) and ``bench/reliability.py``, which reruns every case
and writes the README's reliability table."""
