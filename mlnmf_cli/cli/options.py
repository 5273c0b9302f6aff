"""Command-line options derived from the option declarations (:class:`mlnmf_cli.options.Options`).

:func:`with_options` gives a command one ``--option`` per declared field (type,
default, limits and help text from the declaration) and hands their values to
the command as one ``settings`` dict; :func:`build_options` turns them and
``--ranks``/``--layers`` into :class:`~mlnmf_cli.options.Options`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Annotated, Any, Literal, Optional

import typer

from mlnmf_cli.engine.options import Choice, Integer, Real, option_fields
from mlnmf_cli.errors import ParameterError
from mlnmf_cli.options import DEFAULT_RANKS, Options


def cli_annotation(f: dataclasses.Field[Any]) -> Any:
    """``Annotated[type, typer.Option(...)]`` for one declared option."""
    rule = f.metadata["rule"]
    kind: Any
    if isinstance(rule, Choice):
        kind = Literal[rule.options]
    elif isinstance(rule, Integer):
        kind = int
    elif isinstance(rule, Real):
        kind = float
    else:
        kind = bool
    if getattr(rule, "optional", False):
        kind = Optional[kind]  # noqa: UP045  (a runtime type for Typer)
    names = [f.metadata["flag"] or "--" + f.name.replace("_", "-")]
    low = rule.low if isinstance(rule, (Integer, Real)) else None
    return Annotated[kind, typer.Option(*names, help=f.metadata["help"], min=low)]


def cli_parameter(name: str) -> Any:
    """The annotation of the declared option ``name``, for a command that takes it alone."""
    return cli_annotation(next(f for f in dataclasses.fields(Options) if f.name == name))


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


def parse_ranks(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    ranks = []
    for piece in value.split(","):
        piece = piece.strip()
        try:
            rank = int(piece)
        except ValueError:
            raise typer.BadParameter(
                f"ranks must be whole numbers separated by commas, got {value!r}",
                param_hint="'--ranks'",
            ) from None
        if rank < 1:
            raise typer.BadParameter(
                f"every rank must be at least 1, got {rank}", param_hint="'--ranks'"
            )
        ranks.append(rank)
    return tuple(ranks)


_RANKS_FIELD = next(f for f in dataclasses.fields(Options) if f.name == "ranks")

Ranks = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--ranks", "-r", help=_RANKS_FIELD.metadata["help"]),
]
Layers = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--layers", "-l", min=1, help="Number of layers; must match --ranks when both are given."
    ),
]


def build_options(ranks: str | None, layers: int | None, settings: dict[str, Any]) -> Options:
    """Options from the command line, or a usage error (exit 2) naming what is wrong."""
    parsed = parse_ranks(ranks)
    if parsed is None:
        parsed = DEFAULT_RANKS if layers is None else DEFAULT_RANKS[:layers]
        if layers is not None and layers > len(DEFAULT_RANKS):
            raise typer.BadParameter(
                f"--layers {layers} needs --ranks with {layers} ranks (the default has {len(DEFAULT_RANKS)})",
                param_hint="'--layers'",
            )
    elif layers is not None and layers != len(parsed):
        raise typer.BadParameter(
            f"--layers {layers} does not match --ranks {ranks}, which has {len(parsed)} rank(s)",
            param_hint="'--layers'",
        )
    try:
        return Options(ranks=parsed, **settings)
    except ParameterError as exc:
        raise typer.BadParameter(str(exc)) from None
