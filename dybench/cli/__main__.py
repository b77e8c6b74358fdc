"""`python -m dybench.cli ...` (what `accelerate launch -m dybench.cli train-crpo ...` runs): the same
front door as the `dybench` script (dybench/entry.py)."""

from dybench.entry import main

if __name__ == "__main__":
    main()
