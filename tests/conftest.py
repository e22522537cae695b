"""Test-wide settings: hypothesis without a per-example deadline (CI shares 2 cores with
the end-to-end Snakemake run, so wall-clock deadlines would make property tests flaky) and
derandomised, so every CI run checks the same examples."""
from hypothesis import settings

settings.register_profile("ibdiv", deadline=None, derandomize=True)
settings.load_profile("ibdiv")
