"""The console script `layerflow`, also run as `python -m layerflow.cli`."""
from layerflow.cli import app


def main():
    app()


if __name__ == "__main__":
    main()
