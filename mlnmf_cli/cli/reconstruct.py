"""``mlnmf reconstruct``: a saved model -> an image file (and its errors against the original)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from mlnmf_cli.cli.app import app
from mlnmf_cli.cli.options import Command, nonempty_path, whole_number
from mlnmf_cli.cli.output import line, pct


@app.command(cls=Command)
def reconstruct(
    model: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL",
            parser=nonempty_path("MODEL"),
            help="A model.npz or a result folder.",
            show_default=False,
            readable=False,
        ),
    ],
    depth: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            parser=whole_number("--depth", 1),
            help="Depth to rebuild. [default: deepest]",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="IMAGE",
            parser=nonempty_path("--out"),
            help="Image to write; its extension picks the format: .png, .jpg, .tif, .bmp or "
            ".webp (16 bits per sample for a grey PNG or TIFF of a 16-bit original). "
            "[default: rebuilt_depth{d}.png beside the model]",
        ),
    ] = None,
    original: Annotated[
        Path | None,
        typer.Option(
            metavar="IMAGE",
            parser=nonempty_path("--original"),
            help="Compare with this image: relative error and PSNR.",
            readable=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing output file.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON on stdout.")
    ] = False,
) -> None:
    """Rebuild an image from a saved model."""
    from mlnmf_cli import pipeline

    rebuilt = pipeline.reconstruct(model, depth, out, original, force=force)
    if rebuilt.note:
        line(f"note: {rebuilt.output}: {rebuilt.note}")
    if as_json:
        sys.stdout.write(json.dumps(rebuilt.as_dict(), indent=2) + "\n")
        return
    text = f"wrote {rebuilt.output} (depth {rebuilt.depth} of {rebuilt.model_depth})"
    if rebuilt.errors is not None:
        psnr = rebuilt.errors["psnr"]
        text += (
            f"; against {original}: relative error {pct(rebuilt.errors['relative_error'])}, PSNR "
            + ("inf" if psnr is None else f"{psnr:.2f} dB")
        )
    line(text)
