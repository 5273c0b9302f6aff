from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlnmf_cli import render
from mlnmf_cli.errors import ParameterError
from mlnmf_cli.render import figure

WHITE = (255, 255, 255)
SEQ_MAX = tuple(int(c) for c in render.sequential_colors(np.array(1.0)))
SEQ_ZERO = tuple(int(c) for c in render.sequential_colors(np.array(0.0)))


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def colours(image: Image.Image) -> set[tuple[int, ...]]:
    return {tuple(int(c) for c in p) for p in pixels(image).reshape(-1, 3)}


# --- palettes --------------------------------------------------------------------


def test_palettes_end_points() -> None:
    assert SEQ_ZERO == (68, 1, 84)
    assert SEQ_MAX == (253, 231, 37)
    div = render.diverging_colors(np.array([-1.0, 0.0, 1.0]))
    assert tuple(div[1]) == WHITE
    assert div[0, 2] > div[0, 0]  # negative: blue
    assert div[2, 0] > div[2, 2]  # positive: red


def test_sequential_palette_is_monotonic_in_luminance() -> None:
    rgb = render.sequential_colors(np.linspace(0, 1, 50)).astype(float)
    luminance = rgb @ [0.299, 0.587, 0.114]
    assert np.all(np.diff(luminance) > 0)


# --- matrix images ---------------------------------------------------------------


def test_thin_features_scaled_by_a_whole_factor() -> None:
    W = np.random.default_rng(0).random((512, 16))
    image = render.features_image(W)
    assert image.size == (256, 512)  # (width, height): 16 columns x 16
    arr = pixels(image)
    blocks = arr.reshape(512, 16, 16, 3)
    assert np.all(blocks == blocks[:, :, :1, :])  # every column repeated exactly, no blending


def test_thin_coefficients_scaled_by_a_whole_factor() -> None:
    H = np.random.default_rng(1).random((10, 700))
    image = render.coefficients_image(H)
    assert image.size == (700, 260)  # ceil(256 / 10) = 26 rows per component
    arr = pixels(image).reshape(10, 26, 700, 3)
    assert np.all(arr == arr[:, :1])


def test_small_matrix_both_sides_scaled_and_large_left_alone() -> None:
    assert render.matrix_image(np.ones((3, 2)), axis=0).size == (256, 258)
    assert render.matrix_image(np.ones((300, 400)), axis=0).size == (400, 300)
    assert render.matrix_image(np.ones((3, 2)), axis=0, min_size=10).size == (10, 12)


def test_each_feature_column_reaches_the_palette_maximum() -> None:
    W = np.random.default_rng(2).random((64, 4)) * np.array([1e-6, 1.0, 1e3, 5.0])
    arr = pixels(render.features_image(W, min_size=1))
    for j in range(4):
        column = {tuple(int(c) for c in p) for p in arr[:, j]}
        assert SEQ_MAX in column


def test_each_coefficient_row_reaches_the_palette_maximum() -> None:
    H = np.random.default_rng(3).random((3, 50)) * np.array([[1e-4], [1.0], [1e4]])
    arr = pixels(render.coefficients_image(H, min_size=1))
    for i in range(3):
        assert SEQ_MAX in {tuple(int(c) for c in p) for p in arr[i]}
    # normalisation is per row, not per column: a column need not reach the max
    column_maxima = [SEQ_MAX in {tuple(int(c) for c in p) for p in arr[:, j]} for j in range(50)]
    assert not all(column_maxima)


def test_non_negative_uses_sequential_palette() -> None:
    M = np.array([[0.0, 1.0], [0.5, 0.25]])
    image = render.matrix_image(M, axis=0, min_size=1)
    assert pixels(image)[0, 0].tolist() == list(SEQ_ZERO)
    assert WHITE not in colours(image)


def test_negative_values_use_diverging_palette_centred_on_white() -> None:
    M = np.array([[0.0, 1.0], [-0.5, 0.25]])
    arr = pixels(render.matrix_image(M, axis=0, min_size=1))
    assert arr[0, 0].tolist() == list(WHITE)  # zero is white
    assert arr[1, 0, 2] > arr[1, 0, 0]  # negative is blue
    assert arr[0, 1, 0] > arr[0, 1, 2]  # positive is red
    assert SEQ_ZERO not in colours(render.matrix_image(M, axis=0, min_size=1))


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (1, 40)])
def test_zero_matrices_do_not_crash(shape: tuple[int, int]) -> None:
    image = render.features_image(np.zeros(shape))
    assert colours(image) == {SEQ_ZERO}


def test_one_by_one_and_non_finite_values() -> None:
    assert render.features_image(np.array([[7.0]])).size == (256, 256)
    M = np.array([[np.nan, 1.0], [np.inf, -np.inf]])
    arr = pixels(render.features_image(M, min_size=1))
    assert arr.shape == (2, 2, 3)
    assert arr[0, 0].tolist() == list(WHITE)  # NaN drawn as zero; -inf made it diverging


def test_empty_and_bad_matrices() -> None:
    assert render.features_image(np.zeros((0, 4))).size == (256, 256)
    with pytest.raises(ParameterError):
        render.matrix_image(np.zeros((2, 2, 2)), axis=0)
    with pytest.raises(ParameterError):
        render.matrix_image(np.zeros((2, 2)), axis=2)


def test_input_matrix_not_modified() -> None:
    M = np.array([[1.0, -2.0], [np.nan, 4.0]])
    before = M.copy()
    render.features_image(M)
    np.testing.assert_array_equal(M, before)


# --- panels ----------------------------------------------------------------------


def grey(width: int, height: int, value: int = 128) -> Image.Image:
    return Image.new("L", (width, height), value)


def test_summary_panel_sizes_are_sane() -> None:
    W = render.features_image(np.random.default_rng(4).random((512, 16)))
    H = render.coefficients_image(np.random.default_rng(5).random((16, 512)))
    panel = render.summary_panel(
        "camera.png: ranks 16",
        grey(512, 512),
        [(grey(512, 512), "depth 1 (rank 16): error 8.0%")],
        [(W, "W1 (512x16)")],
        [(H, "H1 (16x512)")],
    )
    assert panel.mode == "RGB"
    width, height = panel.size
    assert 2 * 256 < width < 1000
    assert 3 * 256 < height < 1200
    assert pixels(panel)[0, 0].tolist() == list(WHITE)


def test_summary_panel_huge_and_tiny_inputs() -> None:
    huge = render.summary_panel(
        "t",
        grey(6000, 4000),
        [(grey(6000, 4000), "r")],
        [(grey(30, 5000), "W")],
        [(grey(9000, 8), "H")],
    )
    assert huge.size[0] < 1500 and huge.size[1] < 1200
    tiny = render.summary_panel("", grey(1, 1, 0), [(grey(1, 1, 0), "r")], [], [])
    arr = pixels(tiny)
    assert tiny.size[0] < 1000 and tiny.size[1] < 400
    assert (arr == 0).all(axis=2).sum() >= 2 * 128 * 128  # 1x1 pictures enlarged, not lost


def test_summary_panel_grows_with_depth() -> None:
    def panel(depth: int) -> Image.Image:
        recs = [(grey(64, 64), f"depth {d}") for d in range(1, depth + 1)]
        return render.summary_panel("t", grey(64, 64), recs, recs, recs)

    assert panel(3).size[0] > panel(1).size[0]


def test_montage_grid() -> None:
    rows = [
        [
            (grey(512, 512), "original"),
            (grey(16, 512), "W"),
            (grey(512, 16), "H"),
            (grey(1, 1), "rec"),
        ],
        [(grey(10, 10), "original"), (grey(3, 3), "W")],
    ]
    image = render.montage(rows, title="batch", cell=100)
    width, height = image.size
    assert 4 * 100 <= width < 4 * 100 + 200
    assert 2 * 100 <= height < 2 * 100 + 150
    wider = render.montage(rows, title="batch", cell=150)
    assert wider.size[0] > width


def test_montage_rejects_bad_cell() -> None:
    with pytest.raises(ParameterError):
        render.montage([[(grey(2, 2), "x")]], cell=0)


def test_heatmap_writes_values_and_colours_cells() -> None:
    values = np.array([[0.0, 0.5], [1.0, np.nan]])
    image = render.heatmap(values, ["a", "b"], ["x", "y"], "errors")
    found = colours(image)
    assert SEQ_ZERO in found and SEQ_MAX in found
    assert (225, 225, 225) in found  # the NaN cell
    changed = render.heatmap(
        np.array([[0.0, 0.51], [1.0, np.nan]]), ["a", "b"], ["x", "y"], "errors"
    )
    assert changed.size == image.size
    assert not np.array_equal(pixels(changed), pixels(image))  # the written number changed


def test_heatmap_respects_vmin_vmax() -> None:
    image = render.heatmap(np.array([[5.0, 10.0]]), ["r"], ["a", "b"], "", vmin=5.0, vmax=10.0)
    found = colours(image)
    assert SEQ_ZERO in found and SEQ_MAX in found


def test_heatmap_sizes() -> None:
    small = render.heatmap(np.zeros((2, 3)), ["a", "b"], ["x", "y", "z"], "t")
    bigger = render.heatmap(np.zeros((4, 3)), list("abcd"), ["x", "y", "z"], "t")
    assert bigger.size[0] == small.size[0] and bigger.size[1] > small.size[1]
    many = render.heatmap(
        np.random.default_rng(0).random((300, 300)), ["r"] * 300, ["c"] * 300, "t"
    )
    assert max(many.size) < 4000


def test_heatmap_checks_its_arguments() -> None:
    with pytest.raises(ParameterError):
        render.heatmap(np.zeros((2, 2)), ["a"], ["x", "y"], "t")
    with pytest.raises(ParameterError):
        render.heatmap(np.zeros((1, 1)), ["a"], ["x"], "t", vmin=1.0, vmax=1.0)


# --- the decomposition figure ----------------------------------------------------

BAR = figure.BAR_COLOUR
GREY_NA = figure.NOT_APPLICABLE


def boxes(image: Image.Image, colour: tuple[int, ...]) -> list[tuple[int, int]]:
    """(height, width) of each connected patch of exactly ``colour``, largest first."""
    from scipy import ndimage

    mask = (pixels(image) == np.array(colour)).all(axis=2)
    labels, _ = ndimage.label(mask)
    found = [(s[0].stop - s[0].start, s[1].stop - s[1].start) for s in ndimage.find_objects(labels)]
    return sorted(found, key=lambda hw: -hw[0] * hw[1])


def figure(
    parts: list[tuple[list[np.ndarray], list[np.ndarray]]],
    *,
    original: Image.Image | None = None,
    channels: str = "gray",
) -> Image.Image:
    m = parts[0][0][0].shape[0]
    n = parts[0][1][0].shape[1] // (3 if channels == "stack" else 1)
    original = original if original is not None else grey(n, m)
    depth = len(parts[0][0])
    rows = [
        {"depth": d + 1, "rank": parts[0][1][d].shape[0], "relative_error": 0.1,
         "svd_floor": 0.05, "psnr": 30.0}
        for d in range(depth)
    ]  # fmt: skip
    recs = [original] * depth
    return render.decomposition_figure("t", original, recs, rows, parts, channels=channels)


def test_sorted_factors_strongest_first_and_products_unchanged() -> None:
    rng = np.random.default_rng(7)
    Ws = [rng.random((20, 6)), rng.random((6, 4)), rng.random((4, 3))]
    Hs = [rng.random((6, 30)) * rng.random((6, 1)) * 10, rng.random((4, 30)), rng.random((3, 30))]
    before = [W.copy() for W in Ws]
    sWs, sHs = render.sorted_factors(Ws, Hs)
    for W, H in zip(sWs, sHs, strict=True):
        energies = render.component_energies(W, H)
        assert np.all(np.diff(energies) <= 0)
    assert not np.array_equal(sWs[0], Ws[0])  # the engine's order was not already sorted
    for d in range(3):
        chain, sorted_chain = Ws[0], sWs[0]
        for k in range(1, d + 1):
            chain, sorted_chain = chain @ Ws[k], sorted_chain @ sWs[k]
        np.testing.assert_allclose(sorted_chain @ sHs[d], chain @ Hs[d], rtol=1e-12)
    for W, b in zip(Ws, before, strict=True):
        np.testing.assert_array_equal(W, b)


def test_component_energies_checks_shapes() -> None:
    np.testing.assert_allclose(
        render.component_energies(np.array([[3.0, 0.0], [4.0, 1.0]]), np.array([[1.0], [2.0]])),
        [5.0, 2.0],
    )
    with pytest.raises(ParameterError):
        render.component_energies(np.ones((3, 2)), np.ones((3, 4)))


def test_figure_draws_components_sorted_by_energy() -> None:
    W = np.ones((16, 4)) / 4.0
    H = np.ones((4, 16)) * np.array([[1.0], [4.0], [2.0], [3.0]])  # engine order: not sorted
    image = figure([([W], [H])])
    counts = (pixels(image) == np.array(BAR)).all(axis=2).sum(axis=1)
    bars = counts[counts >= 8]  # one bar per component, several pixel rows each
    lengths = list(dict.fromkeys(bars.tolist()))
    assert len(lengths) == 4
    assert lengths == sorted(lengths, reverse=True)
    assert lengths[0] / lengths[-1] == pytest.approx(4.0, rel=0.1)  # energies 4 : 1


def test_figure_keeps_the_aspect_of_small_matrices() -> None:
    rng = np.random.default_rng(8)
    Ws = [rng.random((64, 32)) * 0.5, np.ones((32, 16))]  # W2 all at its maximum: one patch
    Hs = [rng.random((32, 64)), rng.random((16, 64))]
    height, width = boxes(figure([(Ws, Hs)]), SEQ_MAX)[0]
    assert height == 2 * width  # 32 x 16 drawn with square cells, not as a square
    assert width >= 16


def test_figure_wraps_a_tall_picture_instead_of_a_sliver() -> None:
    rng = np.random.default_rng(9)
    Ws, Hs = [rng.random((2000, 4))], [rng.random((4, 64))]
    red = Image.new("RGB", (64, 2000), (255, 0, 0))
    image = figure([(Ws, Hs)], original=red)
    pieces = boxes(image, (255, 0, 0))
    assert len(pieces) > 1  # cut into pieces side by side
    for height, width in pieces:
        assert width >= 30  # the plain fit into 256 x 256 would give 8 px
        assert height <= 256


def test_figure_shows_the_scale_of_each_matrix() -> None:
    rng = np.random.default_rng(10)
    W, H = rng.random((32, 4)), rng.random((4, 32))
    base = figure([([W], [H])])
    row_has_ramp = [
        len({tuple(p) for p in row}) > 60 and tuple(SEQ_ZERO) in {tuple(p) for p in row}
        for row in pixels(base)
    ]
    assert any(row_has_ramp)  # a colour bar: a row with the whole palette
    doubled = figure([([W], [2 * H])])
    assert doubled.size == base.size
    changed = (pixels(doubled) != pixels(base)).any(axis=2)
    assert changed.any()  # the written maximum (and energy) changed...
    assert changed.mean() < 0.01  # ...but nothing else: H is drawn on its own scale


def test_figure_marks_channel_blocks() -> None:
    W, H = np.ones((16, 2)), np.ones((2, 3 * 24))
    stacked = figure([([W], [H])], channels="stack")
    runs = boxes(stacked, SEQ_MAX)
    h_blocks = [hw for hw in runs if hw[0] < 40]  # H's blocks are short (2 components)
    assert len(h_blocks) >= 3 and len({hw for hw in h_blocks[:3]}) == 1  # three equal blocks
    rng = np.random.default_rng(11)
    parts = [([rng.random((16, 3)), rng.random((3, 2))], [rng.random((3, 20)), rng.random((2, 20))])
             for _ in range(3)]  # fmt: skip
    separate = figure(parts, original=Image.new("RGB", (20, 16)), channels="separate")
    blocks = [hw for hw in boxes(separate, GREY_NA) if min(hw) >= 4]  # not text's anti-aliasing
    assert len(blocks) == 6  # W2 block-diagonal: the 6 blocks that do not exist
    assert not [hw for hw in boxes(figure(parts[:1]), GREY_NA) if min(hw) >= 4]


def test_figure_checks_its_arguments() -> None:
    W, H = np.ones((8, 2)), np.ones((2, 8))
    with pytest.raises(ParameterError):
        render.decomposition_figure("t", grey(8, 8), [], [], [([W], [H])])
    with pytest.raises(ParameterError):
        render.decomposition_figure("t", grey(8, 8), [], [], [])


def test_figure_of_tiny_and_degenerate_factors() -> None:
    image = figure([([np.zeros((1, 1))], [np.zeros((1, 1))])], original=grey(1, 1))
    assert image.size[0] < 1200 and image.size[1] < 800
    nan = figure([([np.array([[np.nan, 1.0]])], [np.array([[np.inf], [-1.0]])])])
    assert nan.mode == "RGB"
