"""DyBench: does my video LLM actually watch the video?

Counterfactual clip pairs, an evaluation harness (P-Acc, TimeBlind I-Acc) and CRPO training.
"""

__version__ = "0.1.0"
