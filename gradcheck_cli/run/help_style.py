"""How --help shows flags and arguments: as commands to type, not typer's type markers."""

from typing import Any


def plain_help_metavars() -> None:
    """typer 0.2x marks flags `<bool>` and required arguments `{ID}` in --help; show them as click
    and ruff do (a flag alone, an argument as ID), so usage lines read as commands to type."""
    from typer import core

    option = getattr(core, "TyperOption", None)
    if option is not None and hasattr(option, "display_type_rich"):
        shown = option.display_type_rich

        def display_type_rich(self: Any, ctx: Any) -> Any:
            return None if getattr(self, "is_flag", False) else shown(self, ctx)

        option.display_type_rich = display_type_rich
    argument = getattr(core, "TyperArgument", None)
    if argument is not None and hasattr(argument, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name = str(self.display_name_raw) + ("..." if self.nargs != 1 else "")
            return name if self.required else f"[{name}]"

        argument._usage_display_name = usage_name
