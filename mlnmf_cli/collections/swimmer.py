"""The swimmer collection (Donoho & Stodden 2003), generated: no download needed.

A torso and four limbs, each limb in one of four positions, every combination
once: 4**4 = 256 binary images of 32 x 32 pixels. The 16 limb positions and the
torso never share a pixel, so the collection has an exact non-negative
factorisation of rank 17 whose features are the parts themselves: the standard
check that an NMF recovers parts.
"""

from __future__ import annotations

import itertools

import numpy as np

SIZE = 32
N_POSITIONS = 4
_TORSO = (slice(9, 23), slice(15, 17))  # rows 9..22, columns 15..16
# Limb attachment points (row, column) and the four angles of each limb, in degrees
# counter-clockwise from "pointing right"; rows grow downwards.
_LIMBS = (
    ((10, 14), (90, 135, 180, 225)),  # left arm
    ((10, 17), (90, 45, 0, -45)),  # right arm
    ((22, 14), (180, 210, 240, 270)),  # left leg
    ((22, 17), (-90, -60, -30, 0)),  # right leg
)
_LIMB_START, _LIMB_END = 2.0, 9.0  # pixels from the attachment point


def limb_masks() -> np.ndarray:
    """The 16 limb positions as ``(4, 4, 32, 32)`` 0/1 arrays: ``[limb, position]``."""
    masks = np.zeros((len(_LIMBS), N_POSITIONS, SIZE, SIZE))
    steps = np.arange(_LIMB_START, _LIMB_END + 1e-9, 0.25)
    for i, ((row, col), angles) in enumerate(_LIMBS):
        for j, angle in enumerate(angles):
            t = np.deg2rad(angle)
            r = np.rint(row - steps * np.sin(t)).astype(int)
            c = np.rint(col + steps * np.cos(t)).astype(int)
            masks[i, j, r, c] = 1.0
    return masks


def torso_mask() -> np.ndarray:
    """The torso, present in every image, as a ``(32, 32)`` 0/1 array."""
    mask = np.zeros((SIZE, SIZE))
    mask[_TORSO] = 1.0
    return mask


def parts() -> np.ndarray:
    """The 17 true parts as columns: ``(1024, 17)``, the 16 limb positions then the torso."""
    limbs = limb_masks().reshape(len(_LIMBS) * N_POSITIONS, SIZE * SIZE)
    return np.vstack([limbs, torso_mask().reshape(1, -1)]).T


def swimmer() -> tuple[np.ndarray, list[str]]:
    """All 256 swimmers as ``(256, 32, 32)`` float arrays in {0, 1}, and their names.

    Image ``k`` has limb ``i`` in position ``(k // 4**(3-i)) % 4``; its name says so,
    e.g. ``swimmer_0312`` has the left arm in position 0, the right arm in 3, ...
    """
    masks = limb_masks()
    torso = torso_mask()
    images, names = [], []
    for combo in itertools.product(range(N_POSITIONS), repeat=len(_LIMBS)):
        image = torso.copy()
        for limb, position in enumerate(combo):
            image += masks[limb, position]
        images.append(image)
        names.append("swimmer_" + "".join(map(str, combo)))
    return np.clip(np.stack(images), 0.0, 1.0), names


def recovered_parts(W: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """For each of the 16 limb positions, the best cosine with any column of ``W``.

    ``W`` is ``(1024, r)`` (features as columns, image-shaped 32 x 32). A limb
    position is recovered when its best cosine reaches ``threshold``; the values
    are returned so a caller can report them.
    """
    limbs = parts()[:, :-1]
    A = np.asarray(W, dtype=np.float64)
    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    cos = (limbs / np.linalg.norm(limbs, axis=0)).T @ (A / norms)
    return cos.max(axis=1)
