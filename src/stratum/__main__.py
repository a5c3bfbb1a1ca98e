"""``python -m stratum``: the same as the ``stratum`` console script."""

from stratum.cli.main import run

if __name__ == "__main__":
    run()
