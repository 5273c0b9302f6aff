"""Image files and folders -> one matrix X (pixels x images), each image a column.

Columns are the images' pixels in C order of ``image_shape``: ``(H, W)`` for
grey, ``(H, W, 3)`` for colour, so ``X[:, j].reshape(image_shape)`` is image j
and a dictionary's atoms reshape the same way. With patches, every
``PH x PW`` window (taken every ``stride`` pixels, the last row and column of
windows flush with the image's edges) is a column instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlnmf_cli import imageio
from mlnmf_cli.collections._shared import expand_inputs, parse_size, resize_image
from mlnmf_cli.errors import InputError, MlnmfError, ParameterError

COLLECTION_CHANNELS = ("gray", "stack")

__all__ = [
    "COLLECTION_CHANNELS",
    "Collection",
    "PatchSpec",
    "assemble_patches",
    "columns_of",
    "load_collection",
    "parse_size",
    "patch_grid",
]


@dataclass(frozen=True)
class PatchSpec:
    """Windows of ``size`` (height, width) every ``stride`` (rows, columns) pixels."""

    size: tuple[int, int]
    stride: tuple[int, int]

    def as_dict(self) -> dict[str, list[int]]:
        return {"size": list(self.size), "stride": list(self.stride)}

    @classmethod
    def parse(cls, size: str, stride: str | None) -> PatchSpec:
        """``"8x8"`` and ``"4"`` or ``"4x2"`` (default: the patch size, no overlap)."""
        ph, pw = parse_size(size)
        if stride is None:
            return cls((ph, pw), (ph, pw))
        text = stride.strip().lower()
        if "x" in text:
            sy, sx = parse_size(text)
        else:
            try:
                sy = sx = int(text)
            except ValueError:
                raise ParameterError(
                    f"stride must be a whole number or HEIGHTxWIDTH, got {stride!r}"
                ) from None
            if sy < 1:
                raise ParameterError(f"stride must be at least 1, got {stride!r}")
        return cls((ph, pw), (sy, sx))


@dataclass
class Collection:
    """Images as the columns of one matrix, and where each column came from."""

    X: np.ndarray  # pixels x columns, float64 in [0, 1]
    names: list[str]  # one per column: the input path (with "@row,col" for a patch)
    image_shape: tuple[int, ...]  # what one column reshapes to
    channels: str  # "gray" or "stack"
    color_source: bool  # the inputs were colour images
    inputs: list[str] = field(default_factory=list)  # the files that gave columns, in order
    failed: list[dict[str, str]] = field(default_factory=list)  # {"input", "error"}
    notes: list[str] = field(default_factory=list)
    resize: tuple[int, int] | None = None
    patches: PatchSpec | None = None

    @property
    def n_columns(self) -> int:
        return int(self.X.shape[1])

    def meta(self) -> dict[str, Any]:
        """What a model needs to know to read new images the same way."""
        return {
            "image_shape": list(self.image_shape),
            "channels": self.channels,
            "color_source": self.color_source,
            "value_range": [0.0, 1.0],
            "resize": None if self.resize is None else list(self.resize),
            "patches": None if self.patches is None else self.patches.as_dict(),
            "columns": list(self.names),
            "inputs": list(self.inputs),
        }


def channel_mode(images: Sequence[imageio.LoadedImage], channels: str | None) -> str:
    """The collection's channel mode: asked for, or ``stack``/``gray`` when all agree."""
    if channels is not None:
        if channels not in COLLECTION_CHANNELS:
            raise ParameterError(
                f"--channels {channels} is not available for a collection (one dictionary "
                "for all images): use gray (luminance) or stack (colour atoms)"
            )
        return channels
    colours = {im.is_color for im in images}
    if colours == {True, False}:
        raise ParameterError(
            "the collection mixes colour and grey images: choose --channels gray "
            "(everything as luminance) or --channels stack (grey images as R=G=B)"
        )
    return "stack" if colours == {True} else "gray"


def pixels_for(image: imageio.LoadedImage, channels: str) -> np.ndarray:
    """An image's pixels as the collection sees them: ``(H, W)`` or ``(H, W, 3)``."""
    if channels == "gray":
        return image.pixels if not image.is_color else imageio.to_matrices(image.pixels, "gray")[0]
    if image.is_color:
        return image.pixels
    return np.repeat(image.pixels[:, :, None], 3, axis=2)


def patch_grid(shape: tuple[int, int], spec: PatchSpec) -> list[tuple[int, int]]:
    """Top-left corners of the windows covering an image of ``shape`` (height, width).

    Every ``stride`` pixels, plus a last window flush with the bottom and right
    edges, so every pixel is covered.
    """
    (h, w), (ph, pw), (sy, sx) = shape, spec.size, spec.stride
    if h < ph or w < pw:
        raise InputError(f"image is {h}x{w}, smaller than the {ph}x{pw} patches")

    def starts(n: int, p: int, s: int) -> list[int]:
        out = list(range(0, n - p + 1, s))
        if out[-1] != n - p:
            out.append(n - p)
        return out

    return [(y, x) for y in starts(h, ph, sy) for x in starts(w, pw, sx)]


def columns_of(pixels: np.ndarray, patches: PatchSpec | None) -> tuple[np.ndarray, list[str]]:
    """One image's columns (pixels x k) and their suffixes ("" or "@row,col")."""
    if patches is None:
        return pixels.reshape(-1, 1), [""]
    ph, pw = patches.size
    corners = patch_grid(pixels.shape[:2], patches)
    cols = np.stack([pixels[y : y + ph, x : x + pw].ravel() for y, x in corners], axis=1)
    return cols, [f"@{y},{x}" for y, x in corners]


def assemble_patches(columns: np.ndarray, shape: tuple[int, ...], spec: PatchSpec) -> np.ndarray:
    """Inverse of :func:`columns_of` for patches: overlapping windows are averaged."""
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape[:2], dtype=np.float64)
    ph, pw = spec.size
    patch_shape = (ph, pw, *shape[2:])
    for k, (y, x) in enumerate(patch_grid((int(shape[0]), int(shape[1])), spec)):
        total[y : y + ph, x : x + pw] += columns[:, k].reshape(patch_shape)
        count[y : y + ph, x : x + pw] += 1.0
    return total / (count if len(shape) == 2 else count[:, :, None])


def load_one(
    name: str,
    problem: str | None,
    size: tuple[int, int] | None,
    max_pixels: int | None,
    failed: list[dict[str, str]],
    notes: list[str],
) -> imageio.LoadedImage | None:
    """One input of a collection, resized to ``size`` if given; None (and a row in
    ``failed``) when it cannot be used: ``problem`` says why it was not even opened."""
    if problem is not None:
        failed.append({"input": name, "error": problem})
        return None
    try:
        image = imageio.load_image(name, max_pixels=max_pixels)
    except MlnmfError as exc:
        failed.append({"input": name, "error": str(exc)})
        return None
    if size is not None and image.size != size:
        notes.append(f"{name}: resized from {image.size[0]}x{image.size[1]}")
        image = resize_image(image, size)
    return image


def load_collection(
    paths: Iterable[Path],
    *,
    channels: str | None = None,
    size: tuple[int, int] | None = None,
    patches: PatchSpec | None = None,
    recursive: bool = False,
    max_pixels: int | None = None,
    exclude: Path | None = None,
    on_image: Callable[[str], Any] | None = None,
) -> Collection:
    """Load files and folders into one :class:`Collection`.

    Inputs that cannot be used (undecodable, missing) are listed in ``failed``
    and the rest go on. Whole images must share one size unless ``size`` resizes
    them (patches may come from images of any size). Raises
    :class:`~mlnmf_cli.errors.MlnmfError` when no usable matrix results: no image
    at all, one image (without patches), sizes that differ, a channel mix.
    """
    items = expand_inputs(paths, recursive=recursive, exclude=exclude)
    failed: list[dict[str, str]] = []
    loaded: list[tuple[str, imageio.LoadedImage]] = []
    notes: list[str] = []
    for item in items:
        name = str(item.path)
        if on_image is not None:
            on_image(name)
        image = load_one(name, item.problem, size, max_pixels, failed, notes)
        if image is not None:
            loaded.append((name, image))
    if not loaded:
        detail = f" ({failed[0]['input']}: {failed[0]['error']})" if len(failed) == 1 else ""
        raise InputError(f"no usable image in the collection{detail}")
    mode = channel_mode([im for _, im in loaded], channels)
    if patches is None:
        _check_same_size(loaded)
        if len(loaded) < 2:
            raise InputError(
                f"a collection needs at least 2 images, got 1 ({loaded[0][0]}); "
                "to learn from one image use --patches HxW, or decompose it with 'mlnmf decompose'"
            )
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for name, image in loaded:
        pixels = pixels_for(image, mode)
        try:
            cols, suffixes = columns_of(pixels, patches)
        except InputError as exc:
            failed.append({"input": name, "error": str(exc)})
            continue
        blocks.append(cols)
        names.extend(name + s for s in suffixes)
    if not blocks:
        raise InputError(f"no image is large enough for {patches and patches.size} patches")
    X = np.concatenate(blocks, axis=1)
    shape = pixels_for(loaded[0][1], mode).shape if patches is None else patches.size
    if patches is not None and mode == "stack":
        shape = (*shape[:2], 3)
    if X.shape[1] < 2:
        raise InputError(
            "the patches give only one column; use smaller patches or a smaller stride"
        )
    used = [name for name, _ in loaded if not any(f["input"] == name for f in failed)]
    return Collection(
        X=X,
        names=names,
        image_shape=tuple(int(s) for s in shape),
        channels=mode,
        color_source=any(im.is_color for _, im in loaded),
        inputs=used,
        failed=failed,
        notes=notes,
        resize=size,
        patches=patches,
    )


def _check_same_size(loaded: Sequence[tuple[str, imageio.LoadedImage]]) -> None:
    first_name, first = loaded[0]
    for name, image in loaded[1:]:
        if image.size != first.size:
            (h0, w0), (h, w) = first.size, image.size
            raise InputError(
                f"images differ in size: {first_name} is {h0}x{w0} but {name} is {h}x{w}; "
                "use --size HxW to resize them all to one size"
            )


def image_for_model(
    image: imageio.LoadedImage, meta: dict[str, Any]
) -> tuple[np.ndarray, list[str]]:
    """A new image read the way a collection model's images were: pixels, notes.

    Raises :class:`InputError` when the image cannot match the model: colour
    against grey, or another size when the model was learned without resizing.
    """
    notes: list[str] = []
    channels, color_source = meta["channels"], bool(meta.get("color_source"))
    if image.is_color and channels == "gray" and not color_source:
        raise InputError(
            "image is colour but the model was learned on grey images "
            "(make it grey first, or learn a model with --channels gray on colour images)"
        )
    if not image.is_color and channels == "stack":
        raise InputError(
            "image is grey but the model was learned on colour images (--channels stack)"
        )
    resize = meta.get("resize")
    if resize is not None and image.size != tuple(resize):
        notes.append(f"resized from {image.size[0]}x{image.size[1]}")
        image = resize_image(image, (int(resize[0]), int(resize[1])))
    pixels = pixels_for(image, channels)
    shape = tuple(meta["image_shape"])
    if meta.get("patches") is None and pixels.shape != shape:
        h, w = image.size
        raise InputError(
            f"image is {h}x{w} but the model's images are {shape[0]}x{shape[1]} "
            "(the model was learned without --size, so images are not resized)"
        )
    return pixels, notes


def load_for_model(
    paths: Iterable[Path],
    meta: dict[str, Any],
    patches: PatchSpec | None,
    *,
    recursive: bool = False,
    max_pixels: int | None = None,
    exclude: Path | None = None,
) -> list[Any]:
    """New images read as a model's images were: one :class:`EncodeInput` each, failures kept."""
    from mlnmf_cli.collections.outputs import EncodeInput

    out = []
    for item in expand_inputs(paths, recursive=recursive, exclude=exclude):
        entry = EncodeInput(input=str(item.path), name=item.name, error=item.problem)
        if item.problem is None:
            try:
                image = imageio.load_image(item.path, max_pixels=max_pixels)
                pixels, notes = image_for_model(image, meta)
                cols, suffixes = columns_of(pixels, patches)
            except MlnmfError as exc:
                entry.error = str(exc)
            else:
                entry.pixels, entry.columns, entry.suffixes = pixels, cols, suffixes
                entry.notes = [*image.notes, *notes]
        out.append(entry)
    return out
