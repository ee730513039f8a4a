"""``python -m hub`` is the ``pixelhub`` CLI."""

from hub.cli import main

if __name__ == "__main__":
    main()
