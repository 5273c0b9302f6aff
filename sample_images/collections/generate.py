"""Regenerate the sample collections in this folder (byte for byte): ``python generate.py``.

* ``swimmer/``: the 256 swimmer images (32 x 32, grey), from
  :mod:`mlnmf_cli.collections.swimmer`.
* ``tiles/``: 28 colour tiles (32 x 32) cut from ``../astronaut.png`` and
  ``../coffee.png`` reduced to a quarter of their size (box filter): 16 from
  the astronaut, 12 from the coffee cup. Public domain / CC0 like their sources.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from mlnmf_cli.collections.swimmer import swimmer

HERE = Path(__file__).resolve().parent
TILE = 32


def write_swimmer(folder: Path) -> None:
    images, names = swimmer()
    for image, name in zip(images, names, strict=True):
        Image.fromarray((image * 255).astype(np.uint8), "L").save(
            folder / f"{name}.png", optimize=True
        )


def write_tiles(folder: Path) -> None:
    for source in ("astronaut", "coffee"):
        with Image.open(HERE.parent / f"{source}.png") as im:
            small = im.convert("RGB").reduce(4)
        width, height = small.size
        for y in range(0, height - TILE + 1, TILE):
            for x in range(0, width - TILE + 1, TILE):
                tile = small.crop((x, y, x + TILE, y + TILE))
                tile.save(folder / f"{source}_{y:03d}_{x:03d}.png", optimize=True)


def main() -> None:
    for name, write in (("swimmer", write_swimmer), ("tiles", write_tiles)):
        folder = HERE / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        write(folder)
        print(f"{folder}: {len(list(folder.iterdir()))} images")


if __name__ == "__main__":
    main()
