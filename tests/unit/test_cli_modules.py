"""The group imports a command's module when that command is first asked for (packager/cli/app.py COMMAND_MODULES):
the table names every command each module registers, every command is reachable by name and listed in the help,
and a command runs without the modules of the others (tests/integration/test_cli_process.py: `pack archive` never
imports bench's table of rows)."""

from __future__ import annotations

import importlib

import click

from packager.cli import main
from packager.cli.app import COMMAND_MODULES


def test_the_table_names_what_each_module_registers() -> None:
    for module in set(COMMAND_MODULES.values()):
        importlib.import_module(f"packager.cli.{module}")
    registered = {name: command.callback.__module__.rsplit(".", 1)[-1] for name, command in main.commands.items()}
    lazy = {name: module for name, module in registered.items() if module != "app"}  # app's own: models, build
    assert lazy == COMMAND_MODULES


def test_every_command_is_reachable_by_name_and_listed() -> None:
    ctx = click.Context(main)
    assert set(COMMAND_MODULES) | {"models", "build"} == set(main.list_commands(ctx))
    for name in COMMAND_MODULES:
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name, name
