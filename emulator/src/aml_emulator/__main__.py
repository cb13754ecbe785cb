"""``python -m aml_emulator start|status``: the emulator's CLI without the core's ``aml``."""

from aml_emulator.cli import main

if __name__ == "__main__":
    main()
