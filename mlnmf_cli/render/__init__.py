"""Pictures of what a decomposition learned, as 8-bit PIL images.

Every function is pure: it takes arrays or images and returns a new RGB image,
which the caller saves. :mod:`.colours` draws matrices and pixels exactly,
:mod:`.layout` labelled panels (summary panel, montage, heatmap), :mod:`.figure`
the decomposition figure (summary.png).
"""

from mlnmf_cli.render.colours import (
    coefficients_image,
    diverging_colors,
    features_image,
    matrix_image,
    sequential_colors,
    to_pil,
    to_pil_by_rows,
)
from mlnmf_cli.render.figure import (
    component_energies,
    component_orders,
    decomposition_figure,
    sorted_factors,
)
from mlnmf_cli.render.layout import WHITE, heatmap, montage, summary_panel

__all__ = [
    "WHITE",
    "coefficients_image",
    "component_energies",
    "component_orders",
    "decomposition_figure",
    "diverging_colors",
    "features_image",
    "heatmap",
    "matrix_image",
    "montage",
    "sequential_colors",
    "sorted_factors",
    "summary_panel",
    "to_pil",
    "to_pil_by_rows",
]
