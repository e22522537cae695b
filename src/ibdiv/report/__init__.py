"""What a reader sees: summary and findings tables (`tables`, `findings`) and the figures
(`figures`: style, grids, diagnostic and calibration plots).

May import: every layer below (`core`, `data`, `families`, `backends`, `measure`, `verdict`).
"""
