"""`python -m dybench.cli ...` (what `accelerate launch -m dybench.cli train-crpo ...` runs)."""

from dybench.cli import main

if __name__ == "__main__":
    main()
