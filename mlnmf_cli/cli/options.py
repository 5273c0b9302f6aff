"""Command-line options derived from the option declarations (:class:`mlnmf_cli.options.Options`).

:func:`with_options` gives a command one ``--option`` per declared field (type,
default, rule and help text from the declaration) and hands their values to
the command as one ``settings`` dict; :func:`build_options` turns them and
``--ranks``/``--layers`` into :class:`~mlnmf_cli.options.Options`.

Every value is read by a parser that reports a bad one as one line in
command-line words (``--max-iter -1 is not a whole number of at least 0``),
through :func:`mlnmf_cli.options.parse_value` and :func:`~mlnmf_cli.options.explain`,
and every parameter shows a metavar (``N``, ``R1,R2,...``, ``[nmf|semi]``), never
a Python type. Commands are built with :class:`Command` (``@app.command(cls=Command)``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperArgument, TyperCommand

from mlnmf_cli.engine.options import Choice, Integer, Real, option_fields
from mlnmf_cli.errors import ParameterError
from mlnmf_cli.options import (
    DEFAULT_RANKS,
    FIELDS,
    Options,
    explain,
    parse_value,
    quoted,
    spell,
)


class OptionUsage(typer.BadParameter):
    """A usage error (exit 2) whose message is printed as it is: it already names the option."""

    def format_message(self) -> str:
        return self.message


class _Argument(TyperArgument):
    """An argument shown by its metavar alone: ``INPUT...`` rather than ``inputs... <list[Path]>``."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None if self.metavar else super().display_type_rich(ctx)

    def _rich_display_name(self) -> str:
        return self.display_name_raw + ("..." if self.nargs != 1 else "")

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


class Command(TyperCommand):
    """A command whose arguments are shown by their metavar (see :class:`_Argument`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument and param.metavar:
                param.__class__ = _Argument


# --------------------------------------------------------------------------- parsers


def value_parser(name: str) -> Callable[[Any], Any]:
    """The parser of declared option ``name``: its text read and checked by its rule."""

    def parse(text: Any) -> Any:
        try:
            return parse_value(name, text, "flag")
        except ParameterError as exc:
            raise OptionUsage(str(exc)) from None

    return parse


def out_folder(help: str) -> Any:
    """The ``--out``/``-o`` option of a command that writes a folder (never an empty path)."""
    return typer.Option("--out", "-o", metavar="FOLDER", parser=nonempty_path("--out"), help=help)


def nonempty_path(name: str) -> Callable[[Any], Path]:
    """A parser of a path: an empty one (an unset shell variable) is refused, not read
    as the current folder (``Path("")`` is ``.``: a whole folder decomposed or written into)."""

    def parse(text: Any) -> Path:
        if isinstance(text, Path):  # a default
            return text
        if str(text) == "":
            raise OptionUsage(
                f"{name} '' is an empty path; give a name, or . for the current folder"
            )
        return Path(text)

    return parse


def whole_number(flag: str, low: int, high: int | None = None) -> Callable[[Any], int]:
    """A parser of ``flag``'s whole number of at least ``low`` (and at most ``high``)."""

    def parse(text: Any) -> int:
        try:
            n = int(text)
        except (TypeError, ValueError):
            n = None
        if n is None or n < low or isinstance(text, float) or (high is not None and n > high):
            bounds = f"of at least {low}" if high is None else f"from {low} to {high}"
            raise OptionUsage(f"{flag} {quoted(text)} is not a whole number {bounds}")
        return n

    return parse


def choice(flag: str, options: tuple[str, ...]) -> Callable[[Any], str]:
    """A parser of ``flag``'s value, one of ``options``."""

    def parse(text: Any) -> str:
        if text not in options:
            raise OptionUsage(f"{flag} {text!r} is not one of {', '.join(options)}")
        return str(text)

    return parse


def choice_metavar(options: tuple[str, ...]) -> str:
    return "[" + "|".join(options) + "]"


def _metavar(rule: Any) -> str:
    if isinstance(rule, Choice):
        return choice_metavar(rule.options)
    if isinstance(rule, Integer):
        return "N"
    if isinstance(rule, Real):
        return "X"
    return "R1,R2,..."


# --------------------------------------------------------------------------- declared options


def cli_annotation(f: dataclasses.Field[Any]) -> Any:
    """``Annotated[type, typer.Option(...)]`` for one declared option."""
    rule = f.metadata["rule"]
    names = [f.metadata["flag"] or "--" + f.name.replace("_", "-")]
    if "/" in names[0]:  # an on/off flag
        return Annotated[bool, typer.Option(*names, help=f.metadata["help"])]
    option = typer.Option(
        *names, help=f.metadata["help"], metavar=_metavar(rule), parser=value_parser(f.name)
    )
    return Annotated[Optional[Any] if getattr(rule, "optional", False) else Any, option]  # noqa: UP045


def cli_parameter(name: str) -> Any:
    """The annotation of the declared option ``name``, for a command that takes it alone."""
    return cli_annotation(FIELDS[name])


def with_options(skip: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Replace a command's ``settings`` parameter by one option per declared field.

    The command receives ``settings``: ``{field name: value}`` of those options.
    """
    fields = [f for f in option_fields(Options, "cli") if f.name not in skip]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        generated = [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=f.default,
                annotation=cli_annotation(f),
            )
            for f in fields
        ]
        params: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            if p.name == "settings":
                params.extend(generated)
            else:
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        names = {f.name for f in fields}

        def command(**kwargs: Any) -> Any:
            settings = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            return func(**kwargs, settings=settings)

        command.__name__ = func.__name__
        command.__qualname__ = func.__qualname__
        command.__doc__ = func.__doc__
        command.__module__ = func.__module__
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


Ranks = Annotated[
    Optional[Any],  # noqa: UP045
    typer.Option(
        "--ranks",
        "-r",
        help=FIELDS["ranks"].metadata["help"],
        metavar="R1,R2,...",
        parser=value_parser("ranks"),
    ),
]
Layers = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--layers",
        "-l",
        metavar="N",
        parser=whole_number("--layers", 1),
        help="Number of layers; must match --ranks when both are given.",
    ),
]


def build_options(
    ranks: tuple[int, ...] | None, layers: int | None, settings: dict[str, Any]
) -> Options:
    """Options from the command line, or a usage error (exit 2) naming what is wrong."""
    if ranks is None:
        ranks = DEFAULT_RANKS if layers is None else DEFAULT_RANKS[:layers]
        if layers is not None and layers > len(DEFAULT_RANKS):
            default = spell("ranks", DEFAULT_RANKS)
            raise OptionUsage(
                f"--layers {layers} needs --ranks with {layers} ranks "
                f"(the default {default} has {len(DEFAULT_RANKS)})"
            )
    elif layers is not None and layers != len(ranks):
        count = f"{len(ranks)} rank" + ("" if len(ranks) == 1 else "s")
        raise OptionUsage(
            f"--layers {layers} does not match {spell('ranks', ranks)}, which has {count} "
            f"(give {layers} ranks, or leave out --layers)"
        )
    try:
        return Options(ranks=ranks, **settings)
    except ParameterError as exc:
        raise OptionUsage(explain(exc)) from None
