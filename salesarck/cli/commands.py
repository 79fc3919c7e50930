"""Import every command module so each registers its commands on the `cli` group."""

from __future__ import annotations

import importlib

# Each module adds its commands to `salesarck.cli.base.cli` at import.
COMMAND_MODULES = ["db", "rewards", "pos", "webhooks", "reconcile", "demo"]

for _name in COMMAND_MODULES:
    importlib.import_module(f"salesarck.cli.{_name}")
