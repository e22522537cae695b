"""Measuring samples: entropy estimators and bootstrap (`entropy`), coarse alphabets (`coarse`),
image- and token-space metrics (`metrics`), the probes that run the interventions (`probes`) and
the per-run diagnostics built from them (`diagnostics`) and the decoupling index Δ (`decoupling`).

May import: `core`, `data`, `families` (probes sample through the family interface; backends are
reached only through the registry, by name).
"""
