"""Numerical phantoms: maps of T1, T2 and proton density (PD) for simulation.

Two phantoms are provided:

* :func:`brain_phantom` -- an axial slice of realistic anatomy built from the
  MNI ICBM152 2009a (symmetric) grey- and white-matter probability templates and
  the skull-stripped T1 template that ship inside the ``nilearn`` wheel (read
  from the installed package, never downloaded). Tissue fractions are mixed into
  per-pixel T1, T2 and PD, and a smooth, seeded, low-amplitude spatial variation
  makes the values continuous so that they fall *between* dictionary grid points.
* :func:`shepp_logan_phantom` -- the MR Shepp--Logan phantom with the 3 T tissue
  values of Gach et al. (2008).

Explained in chapter 4, book/04_matching.md.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from mrfbook.utils.checks import check_int

__all__ = [
    "TissueMaps",
    "BRAIN_TISSUES_3T",
    "SHEPP_LOGAN_TISSUES_3T",
    "brain_phantom",
    "shepp_logan_phantom",
    "mni152_data_dir",
]

#: Relaxation times at 3 T (ms) and relative proton density for the brain phantom.
#: T1/T2 of white matter, grey matter and CSF: Bojorquez et al., "What are normal
#: relaxation times of tissues at 3 T?", Magn. Reson. Imaging 35:69-80 (2017)
#: (CSF T2 is approximate; reported values scatter widely).
#: Relative PD (water content, CSF = 1): WM 0.69, GM 0.80 -- typical brain water
#: fractions, used here as a stated modelling assumption rather than a measurement.
BRAIN_TISSUES_3T: dict[str, dict[str, float]] = {
    "CSF": {"t1_ms": 4163.0, "t2_ms": 1650.0, "pd": 1.00},
    "grey matter": {"t1_ms": 1558.0, "t2_ms": 83.0, "pd": 0.80},
    "white matter": {"t1_ms": 830.0, "t2_ms": 75.0, "pd": 0.69},
}

#: MR Shepp--Logan tissues at 3 T: Gach, Tanase & Boada, "2D & 3D Shepp-Logan
#: phantom standards for MRI", 19th Int. Conf. Systems Engineering (2008).
#: T1 follows their field model T1 = A * B0**C (B0 = 3 T) where given; PD is their
#: spin density.
SHEPP_LOGAN_TISSUES_3T: dict[str, dict[str, float]] = {
    "scalp": {"t1_ms": 1000 * 0.324 * 3.0**0.137, "t2_ms": 70.0, "pd": 0.80},
    "marrow": {"t1_ms": 1000 * 0.533 * 3.0**0.088, "t2_ms": 50.0, "pd": 0.12},
    "CSF": {"t1_ms": 4200.0, "t2_ms": 1990.0, "pd": 0.98},
    "grey matter": {"t1_ms": 1000 * 0.857 * 3.0**0.376, "t2_ms": 100.0, "pd": 0.745},
    "white matter": {"t1_ms": 1000 * 0.583 * 3.0**0.382, "t2_ms": 80.0, "pd": 0.617},
    "tumour": {"t1_ms": 1000 * 0.926 * 3.0**0.217, "t2_ms": 100.0, "pd": 0.95},
}

_MIN_SIZE, _MAX_SIZE = 16, 1024
#: In-plane extent of the MNI template grid used for the square field of view (mm).
_MNI_FOV = 233
#: MNI voxel index of z = 0 mm in the 2009a templates shipped by nilearn.
_MNI_Z0 = 72


@dataclass
class TissueMaps:
    """Per-pixel tissue parameters of a 2-D phantom.

    Attributes
    ----------
    t1_ms, t2_ms : numpy.ndarray
        (H, W) float64, relaxation times in ms; 0 outside ``tissue_mask``.
    pd : numpy.ndarray
        (H, W) float64, relative proton density (CSF about 1); 0 outside the mask.
    tissue_mask : numpy.ndarray
        (H, W) bool, True where there is tissue.
    labels : numpy.ndarray or None
        (H, W) int16 dominant tissue per pixel (0 = background); names in ``label_names``.
    label_names : tuple of str
        ``label_names[i]`` names label ``i``.

    Explained in chapter 4, book/04_matching.md.
    """

    t1_ms: np.ndarray
    t2_ms: np.ndarray
    pd: np.ndarray
    tissue_mask: np.ndarray
    labels: np.ndarray | None = None
    label_names: tuple[str, ...] = field(default_factory=tuple)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the maps."""
        return tuple(self.t1_ms.shape)  # type: ignore[return-value]

    def parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """T1 (ms), T2 (ms) and PD of the tissue pixels, each (n_tissue,) float64, row-major order."""
        m = self.tissue_mask
        return self.t1_ms[m], self.t2_ms[m], self.pd[m]


def mni152_data_dir() -> Path:
    """Folder inside the installed nilearn package holding the MNI152 2009a templates.

    Located with :func:`importlib.util.find_spec`, so nothing is imported or downloaded.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise ImportError("nilearn is required for brain_phantom (it ships the MNI152 templates)")
    return Path(spec.origin).parent / "datasets" / "data"


@lru_cache(maxsize=4)
def _mni_slice(z_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GM, WM, brain-mask fractions of one axial MNI slice on a 233x233 1-mm grid.

    Rows run anterior -> posterior, columns along MNI x. float64 in [0, 1].
    """
    import nibabel as nib

    folder = mni152_data_dir()

    def load(kind: str) -> np.ndarray:
        path = folder / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
        img = nib.load(str(path))
        vol = np.asanyarray(img.dataobj)
        if not 0 <= z_index < vol.shape[2]:
            raise ValueError(f"slice_mm is outside the template (z index {z_index})")
        sl = vol[:, :, z_index].astype(np.float64)
        sl /= float(vol.max())
        sl = sl.T[::-1, :]  # rows anterior -> posterior, columns along x
        pad = _MNI_FOV - sl.shape[1]
        return np.pad(sl, ((0, _MNI_FOV - sl.shape[0]), (pad // 2, pad - pad // 2)))

    gm, wm, t1w = load("gm"), load("wm"), load("t1")
    # nilearn's load_mni152_brain_mask thresholds the rescaled T1 template at 0.2;
    # ventricles are filled in so that the CSF inside them is kept.
    brain = ndimage.binary_fill_holes(t1w > 0.2).astype(np.float64)
    return gm, wm, brain


def _resample(img: np.ndarray, size: int) -> np.ndarray:
    """Area-aware resampling of a square image to (size, size), deterministic."""
    factor = size / img.shape[0]
    if factor < 1:  # anti-alias before decimating (approximates pixel-area averaging)
        img = ndimage.gaussian_filter(img, sigma=0.42 / factor, mode="constant")
    out = ndimage.zoom(img, factor, order=1, grid_mode=True, mode="grid-constant", cval=0.0)
    if out.shape != (size, size):  # pragma: no cover - zoom rounding guard
        raise RuntimeError(f"resampling produced {out.shape}, expected {(size, size)}")
    return out


def brain_phantom(
    size: int = 128,
    *,
    slice_mm: float = 18.0,
    seed: int = 0,
    variation: float = 0.04,
    mask_threshold: float = 0.5,
) -> TissueMaps:
    """Axial brain slice with continuous T1, T2 and PD from the MNI ICBM152 2009a templates.

    Tissue fractions ``f_GM``, ``f_WM`` come from the probability templates;
    ``f_CSF = clip(brain_mask - f_GM - f_WM, 0, 1)`` with the brain mask of the
    skull-stripped T1 template (threshold 0.2, ventricles filled). Partial volume
    is mixed in rate space, weighting each tissue by its spins (fast-exchange limit)::

        PD = sum_i f_i PD_i
        1/T1 = sum_i f_i PD_i / T1_i / PD      1/T2 = sum_i f_i PD_i / T2_i / PD

    Then T1, T2 and PD are each multiplied by ``1 + variation * g(x, y)`` with an
    independent smooth random field ``g`` (Gaussian-filtered white noise, sigma
    12 mm, scaled to max |g| = 1, from ``seed``), so values are continuous and
    fall between dictionary grid points. Tissue values: :data:`BRAIN_TISSUES_3T`.

    Parameters
    ----------
    size : int
        Output matrix size, in [16, 1024]; the field of view is 233 mm square.
    slice_mm : float
        MNI z coordinate of the axial slice in mm, in [-40, 60]; the default 18 mm
        passes through the bodies of the lateral ventricles.
    seed : int
        Seed of the smooth variation (deterministic).
    variation : float
        Relative amplitude of the smooth variation, in [0, 0.2].
    mask_threshold : float
        A pixel is tissue when its total tissue fraction is >= this, in (0, 1].

    Returns
    -------
    TissueMaps
        (size, size) maps; T1, T2 in ms, float64; zero outside ``tissue_mask``;
        labels 0 background, 1 CSF, 2 grey matter, 3 white matter (dominant fraction).

    Explained in chapter 4, book/04_matching.md.
    """
    size = check_int("size", size, _MIN_SIZE, _MAX_SIZE)
    if not np.isfinite(slice_mm) or not -40.0 <= float(slice_mm) <= 60.0:
        raise ValueError(f"slice_mm must be in [-40, 60] mm, got {slice_mm}")
    if not np.isfinite(variation) or not 0.0 <= float(variation) <= 0.2:
        raise ValueError(f"variation must be in [0, 0.2], got {variation}")
    if not np.isfinite(mask_threshold) or not 0.0 < float(mask_threshold) <= 1.0:
        raise ValueError(f"mask_threshold must be in (0, 1], got {mask_threshold}")

    gm, wm, brain = _mni_slice(_MNI_Z0 + int(round(float(slice_mm))))
    gm, wm, brain = (_resample(a, size) for a in (gm, wm, brain))
    gm, wm = np.clip(gm, 0.0, 1.0), np.clip(wm, 0.0, 1.0)
    over = np.maximum(gm + wm, 1.0)  # templates can sum slightly above 1 after rounding
    gm, wm = gm / over, wm / over
    csf = np.clip(np.clip(brain, 0.0, 1.0) - gm - wm, 0.0, 1.0)
    fractions = np.stack([csf, gm, wm])  # (3, H, W)
    total = fractions.sum(axis=0)
    mask = total >= float(mask_threshold)

    names = ("CSF", "grey matter", "white matter")
    tis = [BRAIN_TISSUES_3T[n] for n in names]
    spins = np.stack([f * t["pd"] for f, t in zip(fractions, tis)])  # (3, H, W)
    pd = spins.sum(axis=0)
    safe = np.where(mask, pd, 1.0)
    r1 = sum(s / t["t1_ms"] for s, t in zip(spins, tis)) / safe
    r2 = sum(s / t["t2_ms"] for s, t in zip(spins, tis)) / safe

    rng = np.random.default_rng(seed)
    fields = []
    for _ in range(3):
        g = ndimage.gaussian_filter(rng.standard_normal((_MNI_FOV, _MNI_FOV)), sigma=12.0, mode="wrap")
        g /= np.abs(g).max()
        fields.append(_resample(g, size) if size != _MNI_FOV else g)
    a = float(variation)
    t1 = np.where(mask, (1.0 / np.where(mask, r1, 1.0)) * (1.0 + a * fields[0]), 0.0)
    t2 = np.where(mask, (1.0 / np.where(mask, r2, 1.0)) * (1.0 + a * fields[1]), 0.0)
    pd = np.where(mask, pd * (1.0 + a * fields[2]), 0.0)

    labels = np.where(mask, 1 + np.argmax(fractions, axis=0), 0).astype(np.int16)
    if not (np.all(t1[mask] >= t2[mask]) and t1.max() <= 5000.0 and t2.max() <= 2000.0):
        raise RuntimeError("brain_phantom produced values outside the dictionary range")  # pragma: no cover
    return TissueMaps(t1, t2, pd, mask, labels, ("background",) + names)


# Classic Shepp--Logan geometry (x0, y0, semi-axis a along x, semi-axis b along y,
# rotation in degrees), y pointing up, plus Gach's outer scalp and inner CSF layer.
_SL_ELLIPSES: tuple[tuple[str, float, float, float, float, float], ...] = (
    ("scalp", 0.0, 0.0, 0.72, 0.95, 0.0),
    ("marrow", 0.0, 0.0, 0.69, 0.92, 0.0),
    ("CSF", 0.0, -0.0184, 0.6624, 0.874, 0.0),
    ("grey matter", 0.0, -0.0184, 0.6524, 0.864, 0.0),
    ("CSF", 0.22, 0.0, 0.11, 0.31, -18.0),
    ("CSF", -0.22, 0.0, 0.16, 0.41, 18.0),
    ("white matter", 0.0, 0.35, 0.21, 0.25, 0.0),
    ("tumour", 0.0, 0.1, 0.046, 0.046, 0.0),
    ("tumour", 0.0, -0.1, 0.046, 0.046, 0.0),
    ("tumour", -0.08, -0.605, 0.046, 0.023, 0.0),
    ("tumour", 0.0, -0.605, 0.023, 0.023, 0.0),
    ("tumour", 0.06, -0.605, 0.023, 0.046, 0.0),
)


def shepp_logan_phantom(size: int = 128) -> TissueMaps:
    """MR Shepp--Logan phantom with 3 T tissue values of Gach et al. (2008).

    Ellipses are painted in order (later ones replace earlier ones) at pixel
    centres, so every tissue pixel holds exactly one tissue of
    :data:`SHEPP_LOGAN_TISSUES_3T`.

    Parameters
    ----------
    size : int
        Matrix size, in [16, 1024]; the phantom spans [-1, 1] in both directions.

    Returns
    -------
    TissueMaps
        (size, size) maps, T1/T2 in ms; labels index ``label_names``
        (background, scalp, marrow, CSF, grey matter, white matter, tumour).

    Explained in chapter 4, book/04_matching.md.
    """
    size = check_int("size", size, _MIN_SIZE, _MAX_SIZE)
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    x = c[None, :]
    y = -c[:, None]  # row 0 at the top (y = +1)
    names = ("background",) + tuple(SHEPP_LOGAN_TISSUES_3T)
    labels = np.zeros((size, size), dtype=np.int16)
    for name, x0, y0, a, b, deg in _SL_ELLIPSES:
        th = np.deg2rad(deg)
        u = (x - x0) * np.cos(th) + (y - y0) * np.sin(th)
        v = -(x - x0) * np.sin(th) + (y - y0) * np.cos(th)
        labels[(u / a) ** 2 + (v / b) ** 2 <= 1.0] = names.index(name)
    lut = np.zeros((len(names), 3))
    for i, name in enumerate(names[1:], start=1):
        t = SHEPP_LOGAN_TISSUES_3T[name]
        lut[i] = (t["t1_ms"], t["t2_ms"], t["pd"])
    return TissueMaps(lut[labels, 0], lut[labels, 1], lut[labels, 2], labels > 0, labels, names)
