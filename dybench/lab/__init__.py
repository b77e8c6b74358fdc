"""Experiments that check the project's claims end to end with its own builder, trainer and scorer.

`dybench.lab.shortcut`: does correctness-only RL keep a static shortcut that CRPO's counterfactual
branch removes? (`dybench lab shortcut`).
"""
