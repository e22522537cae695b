"""Figures, one module per concern: image grids (`grids`), the diagnostic figures drawn from the
pipeline's tables (`diagnostic_plots`), the oracle and label-calibration figures
(`calibration_plots`), and what they share (`style`). Each function takes numbers already
computed elsewhere and draws them; no science happens here.

This file imports nothing, so a job that draws one kind of figure depends on that module only
(rules' code inputs follow imports, see ibdiv.pipeline.codegraph)."""
