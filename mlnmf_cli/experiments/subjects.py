"""An experiment's inputs: images (resized, made grey or colour to match) and saved models."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mlnmf_cli import imageio, pipeline, storage
from mlnmf_cli.batch.inputs import expand_inputs
from mlnmf_cli.errors import InputError, MlnmfError, ParameterError
from mlnmf_cli.experiments.config import CONFIG_KEYS, Config, value_text
from mlnmf_cli.files import open_regular_file
from mlnmf_cli.options import Options


@dataclass
class Subject:
    """One input: an image to decompose, or a saved model whose factors are reused."""

    name: str
    path: Path
    image: imageio.LoadedImage | None = None
    model: storage.SavedModel | None = None
    report: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    control: bool = False

    @property
    def kind(self) -> str:
        return "image" if self.image is not None else "model"

    def part_shapes(self, options: Options) -> list[tuple[int, int]]:
        """Shapes of the matrices a configuration decomposes (or the model holds)."""
        if self.model is not None:
            m, n = (int(s) for s in self.model.meta["part_shape"])
            return [(m, n)] * int(self.model.meta["n_parts"])
        assert self.image is not None
        height, width = self.image.size
        channels = options.channels_for(self.image)
        if not self.image.is_color or channels == "gray":
            return [(height, width)]
        if channels == "stack":
            return [(height, 3 * width)]
        return [(height, width)] * 3


def check_size(size: tuple[int, int], max_pixels: int | None, count: int = 1) -> None:
    """Refuse an image size (``--resize``, ``--size``) with more pixels than ``max_pixels``
    (default: Pillow's limit, the one image decoding uses), before anything is made;
    ``count`` images of that size (random-test holds them all) share the limit."""
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    pixels = size[0] * size[1]
    if limit is None:
        return
    if pixels > limit:
        raise ParameterError(
            f"{size[0]}x{size[1]} means {pixels} pixels per image, more than the "
            f"limit of {limit} (raise it with --max-pixels)"
        )
    if count * pixels > limit:
        raise ParameterError(
            f"{count} images of {size[0]}x{size[1]} mean {count * pixels} pixels, more than "
            f"the limit of {limit} (raise it with --max-pixels)"
        )


def is_model_input(path: Path) -> bool:
    path = Path(path)
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            return os.path.isfile(path / "model.npz")
    except OSError:
        pass
    return path.suffix.lower() == ".npz"


def load_subjects(
    inputs: Iterable[Path],
    *,
    resize: tuple[int, int] | None = None,
    max_pixels: int | None = None,
    exclude: Path | None = None,
    grey: bool = False,
) -> list[Subject]:
    """Read every input; folders give their images, result folders their model.

    With ``grey`` colour images are turned into their luminance. Otherwise,
    when some inputs are colour and others grey, the grey ones are made colour
    (three equal channels) so that every input gives matrices of one shape.
    Raises :class:`InputError` whose message starts with the input's path.
    """
    if resize is not None:
        check_size(resize, max_pixels)
    paths: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if is_model_input(path):
            paths.append(path)
            continue
        for item in expand_inputs([path], recursive=False, exclude=exclude):
            if item.problem is not None:
                raise InputError(f"{item.path}: {item.problem}")
            paths.append(item.path)
    if not paths:
        raise InputError("no inputs")
    names = storage.unique_names(paths)
    subjects = []
    for name, path in zip(names, paths, strict=True):
        try:
            subjects.append(_load_subject(name, path, resize, max_pixels))
        except MlnmfError as exc:
            raise InputError(f"{path}: {exc}") from None
    if grey:
        for s in subjects:
            if s.image is not None and s.image.is_color:
                s.image = replace(s.image, pixels=imageio.to_matrices(s.image.pixels, "gray")[0])
                s.notes.append("colour image turned into its luminance to match the others")
    colours = {s.image.is_color for s in subjects if s.image is not None}
    if len(colours) == 2:
        for s in subjects:
            if s.image is not None and not s.image.is_color:
                s.image = _as_colour(s.image)
                s.notes.append("grey image made colour (three equal channels) to match the others")
    return subjects


def _load_subject(
    name: str, path: Path, resize: tuple[int, int] | None, max_pixels: int | None
) -> Subject:
    if is_model_input(path):
        model_file = pipeline.model_path(path)
        model = storage.load_model(model_file, max_pixels=max_pixels)
        if resize is not None and tuple(model.meta["image_shape"][:2]) != resize:
            shape = "x".join(str(s) for s in model.meta["image_shape"][:2])
            raise InputError(
                f"a saved model cannot be resized (its image was {shape}); "
                "decompose the original image instead"
            )
        return Subject(name, path, model=model, report=_read_report(model_file.parent))
    image = imageio.load_image(path, max_pixels=max_pixels)
    subject = Subject(name, path, image=image, notes=list(image.notes))
    if resize is not None and image.size != resize:
        subject.image = resize_image(image, resize)
        subject.notes.append(
            f"resized from {image.size[0]}x{image.size[1]} to {resize[0]}x{resize[1]}"
        )
    return subject


_REPORT_LIMIT = 16 << 20
"""Bytes of a result folder's report.json read at most (a real one is a few kilobytes)."""


def _read_report(folder: Path) -> dict[str, Any] | None:
    """The report beside a saved model, if there is a sound one (it only adds notes)."""
    try:
        with open_regular_file(folder / "report.json", "a report") as fh:
            text = fh.read(_REPORT_LIMIT + 1)
        if len(text) > _REPORT_LIMIT:
            return None
        report = json.loads(text.decode("utf-8"))
    except (OSError, ValueError, RecursionError, MlnmfError):
        return None
    return report if isinstance(report, dict) else None


def resize_image(image: imageio.LoadedImage, size: tuple[int, int]) -> imageio.LoadedImage:
    """Resample an image to ``(height, width)`` (Lanczos on floats, clipped to [0, 1])."""
    height, width = size
    planes = [image.pixels] if image.pixels.ndim == 2 else np.moveaxis(image.pixels, -1, 0)
    out = []
    for plane in planes:
        pic = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
        pic = pic.resize((width, height), Image.Resampling.LANCZOS)
        out.append(np.asarray(pic, dtype=np.float64))
    pixels = out[0] if len(out) == 1 else np.stack(out, axis=-1)
    return replace(image, pixels=np.clip(pixels, 0.0, 1.0))


def _as_colour(image: imageio.LoadedImage) -> imageio.LoadedImage:
    return replace(image, pixels=np.repeat(image.pixels[:, :, None], 3, axis=2))


def check_shapes(subjects: Sequence[Subject], config: Config) -> None:
    """Raise unless every input gives matrices of one shape under ``config``."""
    shapes = [tuple(s.part_shapes(config.options)) for s in subjects]
    if len(set(shapes)) <= 1:
        return
    listed = ", ".join(_input_shape_text(s, sh) for s, sh in zip(subjects, shapes, strict=True))
    raise ParameterError(
        "inputs have different shapes, so their features (which need equal height) and "
        f"coefficients (which need equal width) cannot be compared: {listed}; "
        "use --resize HxW to bring them to one size"
    )


def _input_shape_text(subject: Subject, shapes: Sequence[tuple[int, int]]) -> str:
    matrices = _shape_text(shapes)
    if subject.image is None:
        return f"{subject.path} {matrices} (saved model)"
    height, width = subject.image.size
    image = f"{height}x{width}"
    return f"{subject.path} {image}" + ("" if matrices == image else f" (decomposed as {matrices})")


def _shape_text(shapes: Sequence[tuple[int, int]]) -> str:
    text = f"{shapes[0][0]}x{shapes[0][1]}"
    return text if len(shapes) == 1 else f"{len(shapes)} x {text}"


def model_mismatch(model: storage.SavedModel, options: Options) -> list[str]:
    """The configuration keys whose value differs from the saved model's parameters."""
    saved = dict(model.meta.get("parameters") or {})
    wanted = options.as_dict()
    diffs = []
    for key in CONFIG_KEYS:
        if key == "channels":
            have, want = model.meta.get("channels"), _channels_for_shape(options, model)
        else:
            have, want = saved.get(key), wanted[key]
            if key == "ranks" and isinstance(have, list):
                have = [int(r) for r in have]
        if have != want:
            diffs.append(f"{key} (model {value_text(have)}, configuration {value_text(want)})")
    return diffs


def _channels_for_shape(options: Options, model: storage.SavedModel) -> str:
    if options.channels is not None:
        return options.channels
    return "stack" if len(model.meta["image_shape"]) == 3 else "gray"
