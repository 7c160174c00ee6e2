"""``python -m asrbatch``."""

from asrbatch.cli import entry

if __name__ == "__main__":
    entry()
