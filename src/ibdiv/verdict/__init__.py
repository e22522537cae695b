"""From measured numbers to a strategy label (DESIGN §5): the rule (`classification`), the
synthetic generators of known truth (`calibration`) and the label calibration suite that runs
them through the same probes and rule (`calibration_suite`).

May import: `core`, `data`, `families`, `measure`.
"""
