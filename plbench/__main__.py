"""``python -m plbench``: the CLI, so that ``torchrun -m plbench train ...`` works."""

from plbench.cli import main

if __name__ == "__main__":
    main()
