"""The command line of the card side: ``smartpurse pos …``, ``apdu``, ``cards serve``, and what every group shares.

The only part of ``purse`` that imports click (and, lazily, rich); the library under it
never prompts and never prints. ``util`` holds the helpers the other packages' command
groups use too, so each concept (the context, the result printer, the passphrase prompt,
the progress bar, tables) has one home (docs/architecture.md).
"""
