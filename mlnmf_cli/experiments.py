"""The seed's equivariance experiments as measurements: ``compare`` and ``random-test``.

The seed write-up claims, from pictures, that the *features* of different
images (even of random pixels) look alike while the *coefficients* differ.
Here that becomes numbers: every input is decomposed with every
configuration (through :func:`mlnmf_cli.pipeline.decompose_image`, the code
``decompose`` runs), and for each configuration and depth the effective
features ``W1...Wl`` and the coefficients ``Hl`` of every pair of inputs are
compared with a measure that ignores component order and scale. Every
similarity comes with two baselines computed the same way:

* the **null** baseline: the same statistic on independent random
  non-negative matrices of the same shapes (what "alike" means by chance);
* the **self** baseline: the same input decomposed again from a random start
  (``init=random``, seed + 1, and iterations even where the configuration
  runs none): how alike two decompositions of *one* image are.
  Another seed alone would not do: the SVD-based starts are deterministic (or
  nearly), so it would often print a meaningless 1.

Nothing here prints; functions return data and the command line renders it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mlnmf_cli import batch, engine, imageio, pipeline, storage
from mlnmf_cli.engine import metrics
from mlnmf_cli.errors import InputError, MlnmfError, OutputError, ParameterError

KINDS = ("features", "coefficients")
MEASURES = ("subspace", "matched")
DISTRIBUTIONS = ("uniform", "normal", "binary")
CONFIG_KEYS = (
    "ranks", "method", "solver", "init", "fine_tune", "fine_tune_iter", "normalize",
    "refit", "max_iter", "tol", "target_error", "dtype", "seed", "channels",
)  # fmt: skip
_BOOL_KEYS = frozenset({"fine_tune", "normalize", "refit"})
_INT_KEYS = frozenset({"fine_tune_iter", "max_iter", "seed"})
_FLOAT_KEYS = frozenset({"tol", "target_error"})
_TRUE = frozenset({"on", "true", "yes", "1"})
_FALSE = frozenset({"off", "false", "no", "0"})

#: The seed's own setup (its ``appr_seminmf``: the SVD-based Semi-NMF start with
#: no iteration after it, layers stacked greedily with no normalisation and no
#: joint fine-tuning). Its code
#: factors each colour channel on its own (``channels=separate``) with rank
#: 100 and then ``min(shape) - 20`` = 80 for the second layer; its random-pixel
#: experiment is one layer of rank 80 on a 100 x 100 image of uniform noise.
LIKE_SEED: dict[str, Any] = {
    "method": "semi",
    "init": "svd",
    "max_iter": 0,
    "normalize": False,
    "refit": False,
    "fine_tune": False,
    "channels": "separate",
}
LIKE_SEED_IMAGE_RANKS = (100, 80)
LIKE_SEED_RANDOM_RANKS = (80,)
LIKE_SEED_RANDOM_SIZE = (100, 100)

#: Features and coefficients count as "about equally alike" when their
#: chance-corrected similarities differ by less than this in a single run.
EQUAL_MARGIN = 0.05
DEFAULT_NULL_DRAWS = 20

Step = Callable[[str], Any]


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    """One column of the grid: a label the user recognises and the options it stands for."""

    label: str
    options: pipeline.Options


def parse_config(spec: str, base: pipeline.Options | None = None) -> Config:
    """``"ranks=64,32,16 method=nmf fine_tune=on"`` -> a :class:`Config`.

    Keys are :class:`~mlnmf_cli.pipeline.Options` field names (``-`` may stand
    for ``_``); booleans accept on/off/true/false/yes/no/1/0; ``target_error``
    and ``channels`` accept ``none``. Raises :class:`ParameterError` naming the
    key or value at fault.
    """
    base = pipeline.Options() if base is None else base
    changes: dict[str, Any] = {}
    for token in spec.split():
        key, sep, value = token.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ParameterError(f"configuration {spec!r}: expected key=value, got {token!r}")
        if key not in CONFIG_KEYS:
            raise ParameterError(
                f"configuration {spec!r}: unknown key {key!r} (allowed: {', '.join(CONFIG_KEYS)})"
            )
        changes[key] = _config_value(spec, key, value)
    try:
        options = replace(base, **changes)
    except ParameterError as exc:
        raise ParameterError(f"configuration {spec!r}: {exc}") from None
    label = " ".join(spec.split()) or "defaults"
    return Config(label, options)


def _config_value(spec: str, key: str, value: str) -> Any:
    def bad(rule: str) -> ParameterError:
        return ParameterError(f"configuration {spec!r}: {key} must be {rule}, got {value!r}")

    low = value.strip().lower()
    if key == "ranks":
        try:
            ranks = tuple(int(p) for p in value.split(","))
        except ValueError:
            raise bad("whole numbers separated by commas") from None
        if not ranks or min(ranks) < 1:
            raise bad("whole numbers of at least 1 separated by commas")
        return ranks
    if key in _BOOL_KEYS:
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise bad("on/off/true/false")
    if key in _INT_KEYS:
        try:
            return int(value)
        except ValueError:
            raise bad("a whole number") from None
    if key in _FLOAT_KEYS:
        if key == "target_error" and low == "none":
            return None
        try:
            number = float(value)
        except ValueError:
            raise bad("a number") from None
        if not math.isfinite(number):
            raise bad("a finite number")
        return number
    if key == "channels" and low in ("none", "auto"):
        return None
    return value


def like_seed_config(ranks: Sequence[int]) -> Config:
    """The seed's setup (see :data:`LIKE_SEED`) with the given ranks."""
    options = replace(pipeline.Options(), ranks=tuple(ranks), **LIKE_SEED)
    settings = " ".join(f"{k}={_value_text(v)}" for k, v in LIKE_SEED.items())
    spec = f"like-seed: ranks={','.join(map(str, ranks))} {settings}"
    return Config(spec, options)


def parse_size(text: str) -> tuple[int, int]:
    """``"128x96"`` -> ``(128, 96)`` (height, width)."""
    pieces = text.lower().replace("\u00d7", "x").split("x")
    try:
        height, width = (int(p) for p in pieces)
    except ValueError:
        raise ParameterError(f"size must be HEIGHTxWIDTH, e.g. 128x128, got {text!r}") from None
    if height < 1 or width < 1:
        raise ParameterError(f"size must be at least 1x1, got {text!r}")
    return height, width


# --------------------------------------------------------------------------- inputs


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

    def part_shapes(self, options: pipeline.Options) -> list[tuple[int, int]]:
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


def is_model_input(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return (path / "model.npz").is_file()
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
    paths: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if is_model_input(path):
            paths.append(path)
            continue
        for item in pipeline.expand_inputs([path], recursive=False, exclude=exclude):
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
        model = storage.load_model(model_file)
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


def _read_report(folder: Path) -> dict[str, Any] | None:
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
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


def model_mismatch(model: storage.SavedModel, options: pipeline.Options) -> list[str]:
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
            diffs.append(f"{key} (model {_value_text(have)}, configuration {_value_text(want)})")
    return diffs


def _channels_for_shape(options: pipeline.Options, model: storage.SavedModel) -> str:
    if options.channels is not None:
        return options.channels
    return "stack" if len(model.meta["image_shape"]) == 3 else "gray"


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


# --------------------------------------------------------------------------- running


@dataclass
class Factors:
    """The factors of one decomposition, one ``(Ws, Hs)`` pair per decomposed matrix.

    In ``separate`` mode there are three parts (R, G, B); they are compared
    part by part (R with R, ...) and the similarities averaged. (Put side by
    side, 3r features could fill the whole space and make every comparison
    trivially 1.)
    """

    parts: list[tuple[list[np.ndarray], list[np.ndarray]]]

    @property
    def depth(self) -> int:
        return len(self.parts[0][0])

    def features(self, depth: int) -> np.ndarray:
        mats = []
        for Ws, _ in self.parts:
            M = np.asarray(Ws[0], dtype=np.float64)
            for W in Ws[1:depth]:
                M = M @ np.asarray(W, dtype=np.float64)
            mats.append(M)
        return mats[0] if len(mats) == 1 else np.concatenate(mats, axis=1)

    def coefficients(self, depth: int) -> np.ndarray:
        mats = [np.asarray(Hs[depth - 1], dtype=np.float64) for _, Hs in self.parts]
        return mats[0] if len(mats) == 1 else np.concatenate(mats, axis=0)

    def factor(self, kind: str, depth: int) -> list[np.ndarray]:
        """Per part: the effective features W1...Wl, or the coefficients Hl."""
        out = []
        for Ws, Hs in self.parts:
            if kind == "features":
                M = np.asarray(Ws[0], dtype=np.float64)
                for W in Ws[1:depth]:
                    M = M @ np.asarray(W, dtype=np.float64)
            else:
                M = np.asarray(Hs[depth - 1], dtype=np.float64)
            out.append(M)
        return out


@dataclass
class Run:
    """One cell of the grid: one input decomposed with one configuration."""

    subject: Subject
    config: Config
    factors: Factors
    depths: list[dict[str, Any]]
    seconds: float | None
    source: str  # "computed" or "saved model"
    decomposition: pipeline.Decomposition | None = None
    self_factors: Factors | None = None

    def reconstruction(self, depth: int) -> np.ndarray:
        if self.decomposition is not None:
            return self.decomposition.reconstruction(depth)
        assert self.subject.model is not None
        return pipeline.rebuild(self.subject.model, depth)

    def original(self) -> np.ndarray | None:
        return None if self.decomposition is None else self.decomposition.target

    def row(self) -> dict[str, Any]:
        return {
            "input": self.subject.name,
            "path": str(self.subject.path),
            "config": self.config.label,
            "source": self.source,
            "seconds": None if self.seconds is None else round(self.seconds, 4),
            "depths": self.depths,
        }


def run_grid(
    subjects: Sequence[Subject],
    configs: Sequence[Config],
    *,
    self_baseline: bool = True,
    step: Step | None = None,
) -> list[list[Run]]:
    """Decompose every input with every configuration: ``runs[config][input]``.

    Images go through :func:`pipeline.decompose_image`; with ``self_baseline``
    each is decomposed a second time from a random start (seed + 1). A saved
    model is used as it is when its parameters match the configuration; a
    model cannot be re-run (its image is not stored), so a mismatch is an
    error, and it has no self baseline.
    """
    for config in configs:
        check_shapes(subjects, config)
        for s in subjects:
            if s.model is not None:
                diffs = model_mismatch(s.model, config.options)
                if diffs:
                    raise ParameterError(
                        f"{s.path}: saved model does not match configuration "
                        f"{config.label!r} in {'; '.join(diffs)}, and it cannot be re-run "
                        "because the original image is not stored in it"
                    )
    grid = []
    for config in configs:
        row = []
        for s in subjects:
            if step is not None:
                step(f"{s.name} [{config.label}]")
            try:
                row.append(_run_one(s, config, self_baseline))
            except MlnmfError as exc:
                raise type(exc)(f"{s.path} with configuration {config.label!r}: {exc}") from None
        grid.append(row)
    return grid


def _run_one(subject: Subject, config: Config, self_baseline: bool) -> Run:
    if subject.model is not None:
        factors = Factors([(list(Ws), list(Hs)) for Ws, Hs in subject.model.parts])
        return Run(
            subject, config, factors, _saved_depths(subject, factors), _saved_seconds(subject),
            "saved model",
        )  # fmt: skip
    assert subject.image is not None
    d = pipeline.decompose_image(subject.image, config.options)
    factors = Factors([(list(p.Ws), list(p.Hs)) for p in d.parts])
    depths = [
        {**row, **_sparsity(factors, depth)} for depth, row in enumerate(d.depth_errors(), start=1)
    ]
    self_factors = None
    if self_baseline:
        # A random start left as it is would be noise, not a decomposition: when the
        # configuration runs no iterations (the seed's setup), the self run does.
        iterations = config.options.max_iter or engine.DEFAULTS["max_iter"]
        other = replace(
            config.options, seed=config.options.seed + 1, init="random", max_iter=iterations
        )
        again = pipeline.decompose_image(subject.image, other)
        self_factors = Factors([(list(p.Ws), list(p.Hs)) for p in again.parts])
    return Run(
        subject, config, factors, depths, d.seconds.get("factorize"), "computed", d, self_factors
    )


def _sparsity(factors: Factors, depth: int) -> dict[str, float]:
    return {
        "sparsity_features": float(metrics.hoyer_sparsity(factors.features(depth))),
        "sparsity_coefficients": float(metrics.hoyer_sparsity(factors.coefficients(depth))),
        "top_feature_share": top_column_share(factors.factor("features", depth)),
    }


def top_column_share(parts: Sequence[np.ndarray]) -> float:
    """Largest share of a factor's squared norm held by one column (worst part).

    Near 1 when one column dominates, as with the seed's SVD start: a picture
    drawn on one colour scale then shows that column and little else.
    """
    shares = []
    for M in parts:
        energy = np.sum(np.square(M), axis=0)
        total = float(energy.sum())
        shares.append(float(energy.max()) / total if total > 0 else 0.0)
    return max(shares)


def _saved_depths(subject: Subject, factors: Factors) -> list[dict[str, Any]]:
    """Per-depth numbers of a saved model: errors from its report.json when it has one."""
    known: dict[int, Mapping[str, Any]] = {}
    if subject.report is not None:
        for saved in subject.report.get("depths") or []:
            if isinstance(saved, dict) and "depth" in saved:
                known[int(saved["depth"])] = saved
    rows = []
    for depth in range(1, factors.depth + 1):
        rep = known.get(depth, {})
        row: dict[str, Any] = {
            "depth": depth,
            "rank": int(factors.coefficients(depth).shape[0] // len(factors.parts)),
            "relative_error": rep.get("relative_error"),
            "psnr": rep.get("psnr"),
            "greedy_relative_error": rep.get("greedy_relative_error"),
            "svd_floor": None,
        }
        row.update(_sparsity(factors, depth))
        rows.append(row)
    return rows


def _saved_seconds(subject: Subject) -> float | None:
    seconds = (subject.report or {}).get("seconds") or {}
    value = seconds.get("factorize") if isinstance(seconds, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


# --------------------------------------------------------------------------- similarity


def similarity(A: np.ndarray, B: np.ndarray, kind: str, measure: str = "subspace") -> float:
    """How alike two factors are, ignoring the order and scale of their components.

    Features (m x r) are compared by their columns, coefficients (r x n) by
    their rows. ``subspace``: mean cosine of the principal angles between the
    spanned subspaces; ``matched``: mean cosine of columns matched one to one.
    """
    if kind not in KINDS:
        raise ParameterError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "coefficients":
        A, B = A.T, B.T
    if measure == "subspace":
        return float(metrics.subspace_similarity(A, B))
    if measure == "matched":
        return float(metrics.matched_cosine(A, B))
    raise ParameterError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")


def part_similarity(
    A: Sequence[np.ndarray], B: Sequence[np.ndarray], kind: str, measure: str = "subspace"
) -> float:
    """Mean :func:`similarity` of corresponding parts (one part unless channels=separate)."""
    if len(A) != len(B):
        raise ParameterError(f"cannot compare {len(A)} part(s) with {len(B)}")
    return float(np.mean([similarity(a, b, kind, measure) for a, b in zip(A, B, strict=True)]))


def similarity_matrix(
    factors: Sequence[Sequence[np.ndarray]],
    kind: str,
    measure: str,
    diagonal: Sequence[float | None],
) -> np.ndarray:
    """Pairwise similarities; the diagonal holds ``diagonal`` (the self baseline, or NaN)."""
    n = len(factors)
    out = np.full((n, n), np.nan)
    for i in range(n):
        value = diagonal[i]
        out[i, i] = np.nan if value is None else value
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = part_similarity(factors[i], factors[j], kind, measure)
    return out


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(matrix.shape[0], k=1)
    return matrix[i, j]


def null_draws(
    shape: tuple[int, int],
    n_inputs: int,
    kind: str,
    measure: str,
    draws: int,
    rng: np.random.Generator,
    parts: int = 1,
) -> np.ndarray:
    """The across-input statistic on random data: ``draws`` values of the mean pairwise
    similarity of ``max(n_inputs, 2)`` independent sets of ``parts`` uniform
    non-negative matrices of ``shape``."""
    n = max(n_inputs, 2)
    values = np.empty(draws)
    for k in range(draws):
        sets = [[rng.random(shape) for _ in range(parts)] for _ in range(n)]
        values[k] = np.mean(
            [
                part_similarity(sets[i], sets[j], kind, measure)
                for i in range(n)
                for j in range(i + 1, n)
            ]
        )
    return values


def chance_corrected(value: float | None, null: float) -> float | None:
    """``(value - null) / (1 - null)``: 0 at chance, 1 when identical; None if undefined."""
    if value is None or 1.0 - null < 1e-9:
        return None
    return (value - null) / (1.0 - null)


def summarise(
    matrix: np.ndarray,
    null: np.ndarray,
    self_values: Sequence[float | None],
    trivial: bool,
    control: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """The numbers of one similarity matrix, each beside its baselines.

    ``across`` is over pairs of inputs that are not controls; ``control`` is the
    mean similarity between a control input and the others.
    """
    is_control = np.zeros(matrix.shape[0], dtype=bool) if control is None else np.asarray(control)
    main = np.flatnonzero(~is_control)
    pairs = off_diagonal(matrix[np.ix_(main, main)])
    control_pairs = matrix[np.ix_(np.flatnonzero(is_control), main)].ravel()
    across = None
    if pairs.size:
        across = {
            "mean": float(pairs.mean()),
            "min": float(pairs.min()),
            "max": float(pairs.max()),
        }
    known_self = [v for v in self_values if v is not None]
    null_mean = float(null.mean())
    return {
        "across": across,
        "null": {
            "mean": null_mean,
            "sd": float(null.std(ddof=1)) if null.size > 1 else 0.0,
            "low": float(np.percentile(null, 2.5)),
            "high": float(np.percentile(null, 97.5)),
            "draws": int(null.size),
        },
        "self": (
            {
                "mean": float(np.mean(known_self)),
                "min": float(np.min(known_self)),
                "max": float(np.max(known_self)),
            }
            if known_self
            else None
        ),
        "corrected": chance_corrected(None if across is None else across["mean"], null_mean),
        "control": float(control_pairs.mean()) if control_pairs.size else None,
        "trivial": trivial,
    }


@dataclass
class CompareResult:
    """Everything ``compare`` measured; ``to_json`` is what goes into compare.json."""

    subjects: list[Subject]
    configs: list[Config]
    runs: list[list[Run]]
    measure: str
    similarities: list[dict[str, Any]]
    null_draws: int
    seconds: float = 0.0

    def entries(self, config_index: int, depth: int) -> dict[str, dict[str, Any]]:
        return {
            e["kind"]: e
            for e in self.similarities
            if e["config_index"] == config_index and e["depth"] == depth
        }

    def verdict_stats(self, config_index: int, depth: int) -> dict[str, Any]:
        entries = self.entries(config_index, depth)
        return {
            "config": self.configs[config_index].label,
            "depth": depth,
            "measure": self.measure,
            "repeats": 1,
            **{kind: point_stats(entries[kind]) for kind in KINDS},
        }

    def verdicts(self, depth: int | None = None) -> list[dict[str, Any]]:
        out = []
        for ci, config in enumerate(self.configs):
            d = min(depth or 1, len(config.options.ranks))
            stats = self.verdict_stats(ci, d)
            out.append({"config": config.label, "depth": d, "verdict": verdict(stats)})
        return out

    def to_json(self, verdict_depth: int | None = None) -> dict[str, Any]:
        return {
            "version": storage.REPORT_VERSION,
            "versions": storage.versions(),
            "measure": self.measure,
            "null_draws": self.null_draws,
            "inputs": [
                {
                    "name": s.name,
                    "path": str(s.path),
                    "kind": s.kind,
                    "control": s.control,
                    "notes": list(s.notes),
                }
                for s in self.subjects
            ],
            "configs": [
                {"label": c.label, "parameters": c.options.as_dict()} for c in self.configs
            ],
            "runs": [run.row() for row in self.runs for run in row],
            "similarities": [_public(e) for e in self.similarities],
            "verdicts": self.verdicts(verdict_depth),
            "seconds": round(self.seconds, 3),
        }

    def csv_rows(self) -> list[dict[str, Any]]:
        rows = []
        names = [s.name for s in self.subjects]
        for e in self.similarities:
            base = {
                "config": e["config"],
                "depth": e["depth"],
                "rank": e["rank"],
                "kind": e["kind"],
                "measure": self.measure,
                "null_mean": _round(e["null"]["mean"]),
                "null_low": _round(e["null"]["low"]),
                "null_high": _round(e["null"]["high"]),
                "self_mean": _round(e["self"]["mean"]) if e["self"] else None,
                "trivial": e["trivial"],
            }
            matrix = np.asarray(e["matrix"], dtype=float)
            for i in range(len(names)):
                for j in range(i + 1, len(names)):
                    rows.append(
                        {
                            **base,
                            "input_a": names[i],
                            "input_b": names[j],
                            "similarity": _round(matrix[i, j]),
                            "self_a": _round(matrix[i, i]),
                            "self_b": _round(matrix[j, j]),
                            "corrected": _round(
                                chance_corrected(float(matrix[i, j]), e["null"]["mean"])
                            ),
                        }
                    )
            if e["across"] is not None:
                rows.append(
                    {
                        **base,
                        "input_a": "(mean of pairs)",
                        "input_b": "",
                        "similarity": _round(e["across"]["mean"]),
                        "corrected": _round(e["corrected"]),
                    }
                )
        return rows


CSV_FIELDS = (
    "config", "depth", "rank", "kind", "measure", "input_a", "input_b", "similarity",
    "null_mean", "null_low", "null_high", "self_a", "self_b", "self_mean", "corrected", "trivial",
)  # fmt: skip


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in entry.items() if k != "config_index"}
    out["matrix"] = [[_round(v) for v in row] for row in np.asarray(entry["matrix"], dtype=float)]
    return out


def compare_runs(
    subjects: Sequence[Subject],
    configs: Sequence[Config],
    runs: Sequence[Sequence[Run]],
    *,
    measure: str = "subspace",
    draws: int = DEFAULT_NULL_DRAWS,
    seed: int = 0,
) -> CompareResult:
    """Similarity matrices, null and self baselines for every configuration and depth."""
    if measure not in MEASURES:
        raise ParameterError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    if draws < 2:
        raise ParameterError(f"null draws must be at least 2, got {draws}")
    rng = np.random.default_rng(seed)
    sims: list[dict[str, Any]] = []
    for ci, (config, row) in enumerate(zip(configs, runs, strict=True)):
        depth = min(run.factors.depth for run in row)
        for d in range(1, depth + 1):
            for kind in KINDS:
                mats = [run.factors.factor(kind, d) for run in row]
                selfs = [
                    None
                    if run.self_factors is None
                    else part_similarity(mats[i], run.self_factors.factor(kind, d), kind, measure)
                    for i, run in enumerate(row)
                ]
                matrix = similarity_matrix(mats, kind, measure, selfs)
                shape = (int(mats[0][0].shape[0]), int(mats[0][0].shape[1]))
                controls = [s.control for s in subjects]
                n_main = len(mats) - sum(controls)
                null = null_draws(shape, n_main, kind, measure, draws, rng, len(mats[0]))
                space, rank = (shape[0], shape[1]) if kind == "features" else (shape[1], shape[0])
                entry = summarise(matrix, null, selfs, trivial=rank >= space, control=controls)
                entry.update(
                    config=config.label,
                    config_index=ci,
                    depth=d,
                    rank=int(config.options.ranks[d - 1]),
                    kind=kind,
                    shape=list(shape),
                    parts=len(mats[0]),
                    labels=[s.name for s in subjects],
                    matrix=matrix,
                )
                sims.append(entry)
    return CompareResult(
        list(subjects), list(configs), [list(r) for r in runs], measure, sims, draws
    )


def compare(
    subjects: Sequence[Subject],
    configs: Sequence[Config],
    *,
    measure: str = "subspace",
    draws: int = DEFAULT_NULL_DRAWS,
    seed: int = 0,
    self_baseline: bool = True,
    step: Step | None = None,
) -> CompareResult:
    """Run the grid and measure it: the whole of ``mlnmf compare`` without files."""
    start = time.perf_counter()
    # Decompositions use as many BLAS threads as a decompose batch does, so the
    # factors are the ones ``decompose`` would write (and BLAS threads do not
    # fight over the cores with other busy processes).
    with batch.blas_limit(batch.BLAS_THREADS):
        runs = run_grid(subjects, configs, self_baseline=self_baseline, step=step)
        result = compare_runs(subjects, configs, runs, measure=measure, draws=draws, seed=seed)
    result.seconds = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------- statistics and verdict


def point_stats(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One run's numbers in the shape :func:`verdict` reads.

    ``across`` is the observed mean over pairs (a point); ``null`` spans the
    2.5-97.5 percentiles of the same statistic on random matrices.
    """
    across = entry["across"]
    null = entry["null"]
    return {
        "across": None if across is None else _interval(across["mean"]),
        "null": {"mean": null["mean"], "low": null["low"], "high": null["high"]},
        "self": None if entry["self"] is None else _interval(entry["self"]["mean"]),
        "corrected": None if entry["corrected"] is None else _interval(entry["corrected"]),
        "control": None if entry.get("control") is None else _interval(entry["control"]),
        "trivial": bool(entry["trivial"]),
    }


def _interval(x: float) -> dict[str, float]:
    return {"mean": float(x), "low": float(x), "high": float(x)}


def interval_text(stat: Mapping[str, float] | None, repeats: int) -> str:
    """A statistic for tables: "mean [low, high]" over several repeats, the mean
    alone for one, "n/a" when there is none; 3 decimals."""
    if stat is None:
        return "n/a"
    if repeats > 1:
        return f"{stat['mean']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"
    return f"{stat['mean']:.3f}"


# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def mean_interval(values: Sequence[float]) -> dict[str, float]:
    """Mean with a 95% Student-t interval (a point when there is one value)."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if x.size < 2:
        return _interval(mean)
    t = _T95[x.size - 2] if x.size - 1 <= len(_T95) else 1.96
    half = t * float(x.std(ddof=1)) / math.sqrt(x.size)
    return {"mean": mean, "low": mean - half, "high": mean + half}


def pooled_stats(per_repeat: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Verdict statistics over repeats: each quantity as a mean with a 95% interval.

    ``per_repeat`` holds :meth:`CompareResult.verdict_stats` of each repeat.
    """
    first = per_repeat[0]
    out: dict[str, Any] = {
        "config": first["config"],
        "depth": first["depth"],
        "measure": first["measure"],
        "repeats": len(per_repeat),
    }
    for kind in KINDS:
        stats: dict[str, Any] = {"trivial": any(r[kind]["trivial"] for r in per_repeat)}
        for key in ("across", "null", "self", "corrected", "control"):
            values = [r[kind][key]["mean"] for r in per_repeat if r[kind][key] is not None]
            stats[key] = mean_interval(values) if len(values) == len(per_repeat) else None
        out[kind] = stats
    diffs = [
        r["features"]["corrected"]["mean"] - r["coefficients"]["corrected"]["mean"]
        for r in per_repeat
        if r["features"]["corrected"] is not None and r["coefficients"]["corrected"] is not None
    ]
    out["difference"] = mean_interval(diffs) if len(diffs) == len(per_repeat) else None
    return out


def verdict(stats: Mapping[str, Any]) -> str:
    """One sentence saying what the numbers show, derived from them alone.

    ``stats`` has ``depth``, ``repeats`` and, for ``features`` and
    ``coefficients``, intervals (``mean``, ``low``, ``high``) for ``across``,
    ``null``, ``self`` and ``corrected`` (chance-corrected similarity), plus
    ``trivial`` (rank equals the dimension). A factor *beats its null
    baseline* when its interval lies wholly above the null's; features and
    coefficients differ when the interval of the difference of their
    chance-corrected scores excludes zero (over repeats) or, for one run,
    when they differ by at least :data:`EQUAL_MARGIN`.
    """
    depth = stats["depth"]
    F, C = stats["features"], stats["coefficients"]
    where = f"At depth {depth}"
    if stats.get("repeats", 1) > 1:
        where += f" over {stats['repeats']} repeats"
    if F["across"] is None or C["across"] is None:
        return f"{where} there is nothing to compare: similarity across inputs needs at least two inputs."
    trivial = [k for k, s in (("features", F), ("coefficients", C)) if s["corrected"] is None]
    if trivial:
        names = " and ".join(trivial)
        verb = "span" if len(trivial) > 1 else "spans"
        return (
            f"{where} the {names} {verb} the whole space (rank equals dimension), so any two "
            f"inputs score {F['across']['mean']:.2f}/{C['across']['mean']:.2f} "
            f"(features/coefficients) exactly like random matrices "
            f"({F['null']['mean']:.2f}/{C['null']['mean']:.2f}) and the comparison says nothing."
        )
    beats_f = F["across"]["low"] > F["null"]["high"]
    beats_c = C["across"]["low"] > C["null"]["high"]
    cf, cc = F["corrected"]["mean"], C["corrected"]["mean"]
    diff = stats.get("difference")
    if diff is not None and stats.get("repeats", 1) > 1:
        differ = diff["low"] > 0 or diff["high"] < 0
    else:
        differ = abs(cf - cc) >= EQUAL_MARGIN
    numbers = (
        f"{cf:.2f} vs {cc:.2f} above chance; raw {stats['measure']} similarity "
        f"{F['across']['mean']:.2f} vs {C['across']['mean']:.2f}, "
        f"null {F['null']['mean']:.2f} vs {C['null']['mean']:.2f}"
    )
    if differ:
        more, less = ("features", "coefficients") if cf > cc else ("coefficients", "features")
        head = f"{where}, {more} are more alike across inputs than {less} ({numbers})"
    else:
        head = (
            f"{where}, features and coefficients are about equally alike across inputs ({numbers})"
        )
    if beats_f and beats_c:
        tail = "and both beat their null baselines"
    elif beats_f:
        tail = "and only the features beat their null baseline"
    elif beats_c:
        tail = "and only the coefficients beat their null baseline"
    else:
        tail = "and neither beats its null baseline"
    return f"{head}, {tail}."


# --------------------------------------------------------------------------- random images


def random_pixels(
    count: int, size: tuple[int, int], distribution: str, seed: int
) -> list[np.ndarray]:
    """``count`` grey images of random pixels in [0, 1], reproducible from ``seed``.

    uniform: U(0, 1); normal: N(0.5, 0.15^2) clipped to [0, 1]; binary: 0 or 1
    with equal odds.
    """
    if distribution not in DISTRIBUTIONS:
        raise ParameterError(
            f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}"
        )
    if count < 1:
        raise ParameterError(f"count must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        if distribution == "uniform":
            px = rng.random(size)
        elif distribution == "normal":
            px = np.clip(rng.normal(0.5, 0.15, size), 0.0, 1.0)
        else:
            px = (rng.random(size) < 0.5).astype(np.float64)
        images.append(px)
    return images


def write_random_images(
    folder: Path, images: Sequence[np.ndarray], prefix: str = "random"
) -> list[Path]:
    """Save random images as 8-bit PNGs (what is then decomposed is read back from them)."""
    paths = []
    for i, px in enumerate(images, start=1):
        path = Path(folder) / f"{prefix}-{i}.png"
        storage.save_image(path, imageio.to_pil(px))
        paths.append(path)
    return paths


def random_image_names(count: int, repeats: int) -> list[str]:
    if repeats == 1:
        return [f"random-{i}.png" for i in range(1, count + 1)]
    return [f"random-r{r:02d}-{i}.png" for r in range(1, repeats + 1) for i in range(1, count + 1)]


# --------------------------------------------------------------------------- output files


def planned_files(result_configs: int, depths: Sequence[int], measure: str = "") -> list[str]:
    """Names of the files ``compare`` writes, known before any work starts."""
    names = ["compare.json", "compare.csv", "runs.csv"]
    for ci in range(1, result_configs + 1):
        names.append(f"montage_config{ci}.png")
        for d in range(1, depths[ci - 1] + 1):
            names.extend(f"heatmap_config{ci}_depth{d}_{kind}.png" for kind in KINDS)
    return names


def refuse_existing_files(out: Path, names: Iterable[str], *, force: bool) -> None:
    if force:
        return
    existing = [n for n in names if (Path(out) / n).exists()]
    if existing:
        shown = ", ".join(existing[:5]) + (
            f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        )
        raise OutputError(f"{out} already holds {shown} (use --force to replace them)")


RUN_FIELDS = (
    "input", "config", "source", "depth", "rank", "relative_error", "greedy_relative_error",
    "svd_floor", "psnr", "sparsity_features", "sparsity_coefficients", "top_feature_share",
    "seconds",
)  # fmt: skip


def write_outputs(
    result: CompareResult,
    out: Path,
    *,
    verdict_depth: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write compare.json, compare.csv, runs.csv, heat maps and montages into ``out``."""
    from mlnmf_cli import render

    out = Path(out)
    data = result.to_json(verdict_depth)
    if extra:
        data.update(extra)
    run_rows = [
        {**{k: v for k, v in r.items() if k != "depths"}, **depth}
        for r in data["runs"]
        for depth in r["depths"]
    ]
    storage.write_csv(out / "runs.csv", run_rows, RUN_FIELDS)
    storage.write_csv(out / "compare.csv", result.csv_rows(), CSV_FIELDS)
    for e in result.similarities:
        ci = e["config_index"] + 1
        self_text = "n/a" if e["self"] is None else f"{e['self']['mean']:.2f}"
        title = (
            f"{e['kind']}, depth {e['depth']}, config {ci} ({result.measure}); "
            f"null {e['null']['mean']:.2f} [{e['null']['low']:.2f}, {e['null']['high']:.2f}], "
            f"self {self_text} (diagonal)"
        )
        labels = list(e["labels"])
        picture = render.heatmap(np.asarray(e["matrix"]), labels, labels, title, vmin=0.0, vmax=1.0)
        storage.save_image(out / f"heatmap_config{ci}_depth{e['depth']}_{e['kind']}.png", picture)
    for ci, row in enumerate(result.runs, start=1):
        depth = min(verdict_depth or 1, row[0].factors.depth)
        storage.save_image(
            out / f"montage_config{ci}.png",
            montage(row, depth, f"config {ci}: {result.configs[ci - 1].label}"),
        )
    storage.write_json(out / "compare.json", data)
    return data


def montage(row: Sequence[Run], depth: int, title: str = "") -> Image.Image:
    """One line per input: original, features, coefficients, reconstruction (seed's Figure 2)."""
    from mlnmf_cli import render

    lines = []
    for run in row:
        original = run.original()
        recon = np.clip(run.reconstruction(depth), 0.0, 1.0)
        if original is None:
            first: tuple[Image.Image, str] = (
                imageio.to_pil(np.full(recon.shape, 0.85)),
                f"{run.subject.name}: original not stored",
            )
        else:
            first = (imageio.to_pil(original), f"{run.subject.name}")
        W = run.factors.features(depth)
        H = run.factors.coefficients(depth)
        err = run.depths[depth - 1].get("relative_error")
        err_text = "" if err is None else f", error {100 * err:.1f}%"
        lines.append(
            [
                first,
                (
                    render.features_image(W),
                    f"features {_chain_label(depth)} ({W.shape[0]}x{W.shape[1]})",
                ),
                (
                    render.coefficients_image(H),
                    f"coefficients H{depth} ({H.shape[0]}x{H.shape[1]})",
                ),
                (imageio.to_pil(recon), f"reconstruction depth {depth}{err_text}"),
            ]
        )
    return render.montage(lines, title=title)


# --------------------------------------------------------------------------- summaries and random-test


def depths_of(configs: Sequence[Config]) -> list[int]:
    return [len(c.options.ranks) for c in configs]


def summary_stats(
    results: Sequence[CompareResult], config_index: int, depth: int
) -> dict[str, Any]:
    """Verdict statistics for one configuration and depth: one run, or pooled over repeats."""
    per_repeat = [r.verdict_stats(config_index, depth) for r in results]
    if len(per_repeat) == 1:
        stats = dict(per_repeat[0])
        F, C = stats["features"], stats["coefficients"]
        stats["difference"] = (
            None
            if F["corrected"] is None or C["corrected"] is None
            else _interval(F["corrected"]["mean"] - C["corrected"]["mean"])
        )
        return stats
    return pooled_stats(per_repeat)


def summary_rows(results: Sequence[CompareResult]) -> list[dict[str, Any]]:
    """One row per configuration, depth and kind with every number beside its baselines."""
    first = results[0]
    rows = []
    for ci, config in enumerate(first.configs):
        for depth in range(1, len(config.options.ranks) + 1):
            stats = summary_stats(results, ci, depth)
            entries = first.entries(ci, depth)
            for kind in KINDS:
                across = entries[kind]["across"]
                rows.append(
                    {
                        "config": config.label,
                        "config_index": ci,
                        "depth": depth,
                        "rank": int(config.options.ranks[depth - 1]),
                        "kind": kind,
                        "repeats": len(results),
                        "pair_range": None if across is None else [across["min"], across["max"]],
                        **stats[kind],
                    }
                )
    return rows


def verdicts(results: Sequence[CompareResult], depth: int | None = None) -> list[dict[str, Any]]:
    """One verdict sentence per configuration, at ``depth`` (default 1, the seed's one layer)."""
    out = []
    for ci, config in enumerate(results[0].configs):
        d = min(depth or 1, len(config.options.ranks))
        stats = summary_stats(results, ci, d)
        out.append({"config": config.label, "depth": d, "verdict": verdict(stats), "stats": stats})
    return out


@dataclass
class RandomTest:
    """What ``random-test`` measured: one :class:`CompareResult` per repeat."""

    results: list[CompareResult]
    image_paths: list[list[Path]]
    size: tuple[int, int]
    distribution: str
    seed: int
    seconds: float = 0.0

    def to_json(self, verdict_depth: int | None = None) -> dict[str, Any]:
        return {
            "version": storage.REPORT_VERSION,
            "versions": storage.versions(),
            "count": len(self.image_paths[0]),
            "size": list(self.size),
            "distribution": self.distribution,
            "seed": self.seed,
            "repeats": len(self.results),
            "image_seeds": [self.seed + r for r in range(len(self.results))],
            "images": [[str(p) for p in paths] for paths in self.image_paths],
            "measure": self.results[0].measure,
            "configs": [
                {"label": c.label, "parameters": c.options.as_dict()}
                for c in self.results[0].configs
            ],
            "summary": [_public_row(r) for r in summary_rows(self.results)],
            "verdicts": [
                {key: value for key, value in v.items() if key != "stats"}
                for v in verdicts(self.results, verdict_depth)
            ],
            "seconds": round(self.seconds, 3),
        }


def _public_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "config_index"}


def random_test(
    out: Path,
    configs: Sequence[Config],
    *,
    count: int = 3,
    size: tuple[int, int] = (128, 128),
    distribution: str = "uniform",
    seed: int = 0,
    repeats: int = 1,
    control: Path | None = None,
    measure: str = "subspace",
    draws: int = DEFAULT_NULL_DRAWS,
    max_pixels: int | None = None,
    step: Step | None = None,
) -> RandomTest:
    """Random-pixel images saved into ``out`` and compared like any inputs, ``repeats`` times.

    Repeat ``r`` (from 0) draws its images with seed ``seed + r``; the
    decompositions keep each configuration's own seed. A control image is
    resized to ``size`` and turned grey like the random images; it is compared
    with them but left out of the across-input mean.
    """
    if repeats < 1:
        raise ParameterError(f"repeats must be at least 1, got {repeats}")
    start = time.perf_counter()
    names = random_image_names(count, repeats)
    results, all_paths = [], []
    for r in range(repeats):
        images = random_pixels(count, size, distribution, seed + r)
        paths = []
        for i, px in enumerate(images):
            path = Path(out) / names[r * count + i]
            storage.save_image(path, imageio.to_pil(px))
            paths.append(path)
        all_paths.append(paths)
        inputs = [*paths, *([control] if control is not None else [])]
        subjects = load_subjects(inputs, resize=size, max_pixels=max_pixels, grey=True)
        if control is not None:
            subjects[-1].control = True
            subjects[-1].name = f"control {subjects[-1].name}"
        for s in subjects[:count]:
            s.name = s.path.stem
        inner = step
        if step is not None and repeats > 1:
            inner = _prefixed(step, f"repeat {r + 1}/{repeats}: ")

        results.append(
            compare(subjects, configs, measure=measure, draws=draws, seed=seed + r, step=inner)
        )
    return RandomTest(results, all_paths, size, distribution, seed, time.perf_counter() - start)


def _prefixed(step: Step, prefix: str) -> Step:
    return lambda text: step(prefix + text)


def random_test_files(count: int, repeats: int, configs: Sequence[Config]) -> list[str]:
    return [
        *random_image_names(count, repeats),
        *planned_files(len(configs), depths_of(configs)),
        "random-test.json",
    ]


def _chain_label(depth: int) -> str:
    return "W1" if depth == 1 else f"W1...W{depth}"
