"""Numerical phantoms: maps of T1, T2 and proton density (PD) for simulation.

Three phantoms are provided, and a registry (:data:`PHANTOMS`, :func:`phantom`) to loop over them:

* :func:`brain_phantom` -- the book's axial slice of realistic anatomy, built from the MNI ICBM152
  2009a (symmetric) grey- and white-matter probability templates and the skull-stripped T1 template
  that ship inside the ``nilearn`` wheel (read from the installed package, never downloaded), with a
  thin short-T2 layer around the brain. A smooth, seeded, low-amplitude spatial variation makes the
  values continuous so that they fall *between* dictionary grid points.
* :func:`head_phantom` -- a second slice that nothing in the project was tuned on: another axial
  level (through the temporal lobes), scalp fat, skull, a lesion, and tissue values from other
  literature sources, some outside the dictionary's range.
* :func:`shepp_logan_phantom` -- the MR Shepp--Logan phantom with the 3 T tissue values of Gach et
  al. (2008), one tissue per pixel.

Partial volume, as in a scan
----------------------------
A pixel of the two anatomical phantoms holds several tissues ("compartments", :class:`Compartments`):
compartment ``k`` has a spin weight ``w_k`` (its volume fraction times its PD) and its own ``T1_k``,
``T2_k``. The signal of the pixel is the PD-weighted *sum of the compartments' fingerprints*,
``sum_k w_k * fingerprint(T1_k, T2_k)`` (slow exchange between compartments, what a voxel of a real
scan holds); no dictionary atom equals it in general. A compartment may lie outside the dictionary's
grid (T2 of bone below 1 ms, T2 of ventricular CSF above 2000 ms): the simulation handles any
T1, T2 > 0. The maps ``t1_ms``, ``t2_ms``, ``pd`` of :class:`TissueMaps` stay the *reference* against
which estimates are scored; for a mixed pixel they are the spin-weighted mix of relaxation *rates*::

    PD = sum_k w_k        1/T1 = sum_k w_k / T1_k / PD        1/T2 = sum_k w_k / T2_k / PD

A mixed pixel has no single true (T1, T2): the reference is a convention (the fast-exchange value),
not a value any method could be expected to return exactly. ``brain_phantom(partial_volume="rates")``
keeps the book's earlier model, in which the signal *is* the single fingerprint of these mixed values.

Explained in chapter 4, book/04_matching.md.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from mrfbook.utils.checks import check_int

__all__ = [
    "TissueMaps",
    "Compartments",
    "BRAIN_TISSUES_3T",
    "random_phantom",
    "SHORT_T2_LAYER_3T",
    "HEAD_TISSUES_3T",
    "SHEPP_LOGAN_TISSUES_3T",
    "PHANTOMS",
    "brain_phantom",
    "head_phantom",
    "shepp_logan_phantom",
    "phantom",
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

#: The brain phantom's short-T2 layer: a 2-mm shell around the brain standing for the dura and the
#: skull's inner table, the tissue a brain mask drawn on a real slice takes in at its edge. Its values
#: are a stated modelling assumption, of the order of cortical bone's at 3 T: bone water has T2 of
#: about 0.4 ms (its collagen-bound water; Manhard et al., Magn. Reson. Med. 71:2166-2171, 2014,
#: PMC3899101), T1 of 134-246 ms (bound / total water, tibia in vivo; Chen et al., NMR Biomed. 2016,
#: PMC5140772) and about 20-25 % water by volume (same). Its T2 lies below the dictionary grid (1 ms).
SHORT_T2_LAYER_3T: dict[str, float] = {"t1_ms": 250.0, "t2_ms": 0.5, "pd": 0.10}

#: Relaxation times at 3 T (ms) and relative PD of the second phantom (:func:`head_phantom`), from
#: sources other than the book's:
#:
#: * grey and white matter: Stanisz et al., "T1, T2 relaxation and magnetization transfer in tissue
#:   at 3T", Magn. Reson. Med. 54:507-512 (2005), Table 1 (in vitro, 37 C): WM 1084 / 69 ms,
#:   GM 1820 / 99 ms.
#: * CSF: "Quantification of T1 and T2 of subarachnoid CSF: implications for water exchange between
#:   CSF and brain tissues", Magn. Reson. Med. (2024), PMC10696635 (3 T, in vivo): subarachnoid
#:   4308.7 / 1885.5 ms ("CSF (surface)"), frontal horns of the lateral ventricles 4454.0 /
#:   2372.9 ms ("CSF (deep)": its T2 lies above the dictionary grid's 1991 ms).
#: * lesion: a solid brain tumour. de Blank et al., "Magnetic resonance fingerprinting to
#:   characterize childhood and young adult brain tumors", Pediatr. Neurosurg. 54:310-318 (2019),
#:   measured solid tumour T1 / T2 = 1444 / 61 ms against 938 / 38 ms in contralateral white matter
#:   (MRF). MRF's absolute T2 there is far below other methods', so the lesion keeps their *ratios*
#:   to white matter (1.54 and 1.61) applied to this table's white matter: 1669 / 111 ms.
#: * bone (skull): bound-water T2 about 0.4 ms (Manhard et al. 2014, PMC3899101), below the
#:   dictionary grid; T1 134 ms (bound water, tibia in vivo at 3 T; Chen et al. 2016, PMC5140772);
#:   PD 0.22 (cortical bone is about 22 % water by volume, same source). All its water is given the
#:   bound-water values (the minority pore water, T2 1 ms - 1 s, is left out).
#: * fat (scalp): Gold et al., "Musculoskeletal MRI at 3.0 T: relaxation times and image contrast",
#:   AJR 183:343-351 (2004), subcutaneous fat 382 / 68 ms.
#:
#: PD (CSF = 1): WM 0.70, GM 0.80 (typical water fractions), lesion 0.85 (more water than white
#: matter), fat 0.90 (its proton density is close to water's) -- stated modelling assumptions.
HEAD_TISSUES_3T: dict[str, dict[str, float]] = {
    "CSF (surface)": {"t1_ms": 4308.7, "t2_ms": 1885.5, "pd": 1.00},
    "CSF (deep)": {"t1_ms": 4454.0, "t2_ms": 2372.9, "pd": 1.00},
    "grey matter": {"t1_ms": 1820.0, "t2_ms": 99.0, "pd": 0.80},
    "white matter": {"t1_ms": 1084.0, "t2_ms": 69.0, "pd": 0.70},
    "lesion": {"t1_ms": 1084.0 * 1444.0 / 938.0, "t2_ms": 69.0 * 61.0 / 38.0, "pd": 0.85},
    "bone": {"t1_ms": 134.0, "t2_ms": 0.4, "pd": 0.22},
    "fat": {"t1_ms": 382.0, "t2_ms": 68.0, "pd": 0.90},
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
#: MNI grid: row r is y = _MNI_Y0 - r mm (anterior first), column c is x = c - _MNI_X0 mm.
_MNI_Y0, _MNI_X0 = 98, 116
#: Thickness of the brain phantom's short-T2 layer (mm, outside the template's brain mask).
_LAYER_MM = 2.0
#: Compartment fractions below this are dropped (round-off and the far tails of the resampling).
_MIN_FRACTION = 1e-6
#: The head phantom's axial level (MNI z, mm): temporal lobes, midbrain, orbitofrontal cortex.
_HEAD_SLICE_MM = -20
#: Head layers outside the intracranial outline (mm): subarachnoid CSF, skull, scalp fat.
_HEAD_CSF_MM, _HEAD_SKULL_MM, _HEAD_SCALP_MM = 2.0, 6.0, 5.0
#: The lesion: centre (MNI x, y in mm; right temporal lobe white matter), semi-axes (mm), angle (deg).
_LESION = (44.0, -15.0, 8.0, 6.0, 30.0)
#: CSF deeper than this (mm) inside the intracranial outline is "CSF (deep)" (ventricles, cisterns).
_DEEP_CSF_MM = 10.0
#: The head phantom's tissue mask: total tissue fraction >= this (the head, without the air).
_HEAD_MASK_THRESHOLD = 0.5
_PARTIAL_VOLUME = ("fingerprints", "rates")


@dataclass
class Compartments:
    """The tissues ("compartments") that share each pixel of a phantom, with their own relaxation.

    The signal of a pixel is ``sum_k weight[k] * fingerprint(t1_ms[k], t2_ms[k])`` (slow exchange):
    :func:`mrfbook.recon.acquisition.image_stack` simulates exactly that. Values may lie outside any
    dictionary's grid (e.g. T2 = 0.4 ms); only T1, T2 > 0 is required where the weight is positive.

    Attributes
    ----------
    names : tuple of str
        (K,) name of each compartment.
    weight : numpy.ndarray
        (K, H, W) float64 spin weight of each compartment, >= 0: its volume fraction times its
        relative proton density (CSF about 1). The pixel's PD is the sum over compartments.
    t1_ms, t2_ms : numpy.ndarray
        (K, H, W) float64 relaxation times in ms of each compartment; 0 where its weight is 0.

    Explained in chapter 4, book/04_matching.md.
    """

    names: tuple[str, ...]
    weight: np.ndarray
    t1_ms: np.ndarray
    t2_ms: np.ndarray

    def __post_init__(self) -> None:
        self.names = tuple(str(n) for n in self.names)
        self.weight = np.asarray(self.weight, dtype=np.float64)
        self.t1_ms = np.asarray(self.t1_ms, dtype=np.float64)
        self.t2_ms = np.asarray(self.t2_ms, dtype=np.float64)
        if self.weight.ndim != 3:
            raise ValueError(f"Compartments.weight must be a (K, H, W) array, got shape {self.weight.shape}")
        for name in ("t1_ms", "t2_ms"):
            if getattr(self, name).shape != self.weight.shape:
                raise ValueError(f"Compartments.{name} must have the weight's shape {self.weight.shape}, "
                                 f"got {getattr(self, name).shape}")
        if len(self.names) != self.weight.shape[0]:
            raise ValueError(f"Compartments.names must name the K = {self.weight.shape[0]} compartments, "
                             f"got {len(self.names)} names")

    @property
    def n_compartments(self) -> int:
        """K, the number of compartments."""
        return int(self.weight.shape[0])

    def reference_maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The spin-weighted rate mix of every pixel: (T1 ms, T2 ms, PD), each (H, W) float64.

        ``PD = sum_k w_k``, ``1/T1 = sum_k w_k / T1_k / PD``, ``1/T2 = sum_k w_k / T2_k / PD``
        (the fast-exchange value, a convention for a mixed pixel); all three are 0 where PD is 0.

        Explained in chapter 4, book/04_matching.md.
        """
        w = self.weight
        pd = w.sum(axis=0)
        on = w > 0
        r1 = np.sum(np.where(on, w / np.where(on, self.t1_ms, 1.0), 0.0), axis=0)
        r2 = np.sum(np.where(on, w / np.where(on, self.t2_ms, 1.0), 0.0), axis=0)
        has = pd > 0
        t1 = np.where(has, pd / np.where(has, r1, 1.0), 0.0)
        t2 = np.where(has, pd / np.where(has, r2, 1.0), 0.0)
        return t1, t2, pd


@dataclass
class TissueMaps:
    """Per-pixel tissue parameters of a 2-D phantom.

    Attributes
    ----------
    t1_ms, t2_ms : numpy.ndarray
        (H, W) float64, relaxation times in ms; 0 outside ``tissue_mask``. With ``compartments``
        these are the *reference* values (the spin-weighted rate mix, see
        :meth:`Compartments.reference_maps`): a mixed pixel has no single true (T1, T2).
    pd : numpy.ndarray
        (H, W) float64, relative proton density (CSF about 1); 0 outside the mask. With
        ``compartments``, the sum of their weights.
    tissue_mask : numpy.ndarray
        (H, W) bool, True where there is tissue: the pixels whose estimates are scored.
    labels : numpy.ndarray or None
        (H, W) int16 dominant tissue per pixel (0 = background); names in ``label_names``.
    label_names : tuple of str
        ``label_names[i]`` names label ``i``.
    compartments : Compartments or None
        The tissues that share each pixel; when set, the signal is the weighted sum of their
        fingerprints (and may be non-zero outside ``tissue_mask``, where a little tissue lies
        below the mask's threshold). None: one tissue per pixel, the signal is ``pd`` times the
        fingerprint of (``t1_ms``, ``t2_ms``) inside the mask.

    Explained in chapter 4, book/04_matching.md.
    """

    t1_ms: np.ndarray
    t2_ms: np.ndarray
    pd: np.ndarray
    tissue_mask: np.ndarray
    labels: np.ndarray | None = None
    label_names: tuple[str, ...] = field(default_factory=tuple)
    compartments: Compartments | None = None

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


def _smooth_fields(rng: np.random.Generator, size: int) -> list[np.ndarray]:
    """Three independent smooth random fields (sigma 12 mm, max |g| = 1) resampled to (size, size)."""
    fields = []
    for _ in range(3):
        g = ndimage.gaussian_filter(rng.standard_normal((_MNI_FOV, _MNI_FOV)), sigma=12.0, mode="wrap")
        g /= np.abs(g).max()
        fields.append(_resample(g, size) if size != _MNI_FOV else g)
    return fields


def _check_real(name: str, value: float, low: float, high: float, *, open_low: bool = False) -> float:
    """``value`` as float in [low, high] (or (low, high]), else ValueError naming ``name`` and the range."""
    allowed = f"{'(' if open_low else '['}{low:g}, {high:g}]"
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}") from exc
    if isinstance(value, bool) or not np.isfinite(number) or number > high or number < low or (open_low and number == low):
        raise ValueError(f"{name} must be in {allowed}, got {value!r}")
    return number


def _mixed_maps(names: tuple[str, ...], fractions: np.ndarray, tissues: list[dict[str, float]],
                fields: list[np.ndarray], variation: float, mask_threshold: float) -> TissueMaps:
    """TissueMaps with compartments from (K, H, W) volume fractions and the tissues' values.

    Each compartment's T1, T2 and spin weight are scaled by ``1 + variation * field`` (the same
    three fields for every compartment, so that a pure pixel is exactly as in the rate model); the
    reference maps are the rate mix; the mask is ``sum of fractions >= mask_threshold``.
    """
    fr = np.where(fractions >= _MIN_FRACTION, fractions, 0.0)
    on = fr > 0
    t1_k = np.array([t["t1_ms"] for t in tissues])[:, None, None]
    t2_k = np.array([t["t2_ms"] for t in tissues])[:, None, None]
    pd_k = np.array([t["pd"] for t in tissues])[:, None, None]
    a = float(variation)
    weight = fr * pd_k * (1.0 + a * fields[2])
    t1 = np.where(on, t1_k * (1.0 + a * fields[0]), 0.0)
    t2 = np.where(on, t2_k * (1.0 + a * fields[1]), 0.0)
    comp = Compartments(names, weight, t1, t2)
    ref_t1, ref_t2, ref_pd = comp.reference_maps()
    mask = (fr.sum(axis=0) >= float(mask_threshold)) & (ref_pd > 0)
    ref_t1, ref_t2, ref_pd = (np.where(mask, m, 0.0) for m in (ref_t1, ref_t2, ref_pd))
    labels = np.where(mask, 1 + np.argmax(fr, axis=0), 0).astype(np.int16)
    return TissueMaps(ref_t1, ref_t2, ref_pd, mask, labels, ("background",) + tuple(names), comp)


def brain_phantom(
    size: int = 128,
    *,
    slice_mm: float = 18.0,
    seed: int = 0,
    variation: float = 0.04,
    mask_threshold: float = 0.5,
    partial_volume: str = "fingerprints",
) -> TissueMaps:
    """Axial brain slice with continuous T1, T2 and PD from the MNI ICBM152 2009a templates.

    Tissue fractions ``f_GM``, ``f_WM`` come from the probability templates;
    ``f_CSF = clip(brain_mask - f_GM - f_WM, 0, 1)`` with the brain mask of the
    skull-stripped T1 template (threshold 0.2, ventricles filled). Tissue values:
    :data:`BRAIN_TISSUES_3T`. A smooth random field ``g`` per quantity (Gaussian-filtered
    white noise, sigma 12 mm, scaled to max |g| = 1, from ``seed``) scales T1, T2 and PD by
    ``1 + variation * g(x, y)``, so values are continuous and fall between dictionary grid points.

    ``partial_volume`` chooses how the tissues of a pixel make its signal:

    * ``"fingerprints"`` (default; what a scan holds): every tissue is a compartment
      (:class:`Compartments`) and the signal is the spin-weighted sum of their fingerprints.
      The slice also gains a 2-mm short-T2 layer outside the brain mask
      (:data:`SHORT_T2_LAYER_3T`: T2 0.5 ms, PD 0.10, below the dictionary grid), the dura and
      inner table that a mask drawn on a real slice takes in at its edge; those edge pixels carry
      little signal. ``t1_ms``, ``t2_ms``, ``pd`` are the reference maps (the rate mix below, with
      the layer included); a mixed pixel has no single true (T1, T2). Labels: 1 CSF, 2 grey matter,
      3 white matter, 4 short-T2 layer. Compartment fractions below 1e-6 (round-off) are dropped.
    * ``"rates"`` (the book's earlier phantom, kept for comparison and for tests of exact
      matching): no layer, and each pixel is one tissue whose values are its tissues' rates mixed
      by their spins (fast-exchange limit), so every pixel is an exact single fingerprint::

        PD = sum_i f_i PD_i
        1/T1 = sum_i f_i PD_i / T1_i / PD      1/T2 = sum_i f_i PD_i / T2_i / PD

      Labels 1 CSF, 2 grey matter, 3 white matter; ``compartments`` is None.

    Where the layer is absent the reference maps of the two models agree (the same mix of the same
    values). At 128 x 128 the default mask holds 6,212 pixels: 282 are in it only thanks to the
    layer (brain fraction below ``mask_threshold``), 278 hold at least 10 % of their spins in the
    layer, 90 have a reference T2 below 1 ms, and with the paper's sequence 166 carry less than a
    quarter of the median tissue pixel's signal (the rate model's mask: 5,930 pixels).

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
        A pixel is tissue when its total tissue fraction (brain, plus the short-T2 layer with
        ``"fingerprints"``) is >= this, in (0, 1].
    partial_volume : {"fingerprints", "rates"}
        The partial-volume model, see above.

    Returns
    -------
    TissueMaps
        (size, size) maps; T1, T2 in ms, float64; zero outside ``tissue_mask``; ``labels`` the
        dominant tissue (0 background); ``compartments`` set with ``"fingerprints"``.

    Raises
    ------
    ValueError
        Naming the parameter and its allowed range or values.

    Explained in chapter 4, book/04_matching.md.
    """
    size = check_int("size", size, _MIN_SIZE, _MAX_SIZE)
    slice_mm = _check_real("slice_mm", slice_mm, -40.0, 60.0)
    variation = _check_real("variation", variation, 0.0, 0.2)
    mask_threshold = _check_real("mask_threshold", mask_threshold, 0.0, 1.0, open_low=True)
    if partial_volume not in _PARTIAL_VOLUME:
        raise ValueError(f"partial_volume must be 'fingerprints' or 'rates', got {partial_volume!r}")
    seed = check_int("seed", seed, 0)

    gm1, wm1, brain1 = _mni_slice(_MNI_Z0 + int(round(slice_mm)))
    gm, wm, brain = (_resample(a, size) for a in (gm1, wm1, brain1))
    gm, wm = np.clip(gm, 0.0, 1.0), np.clip(wm, 0.0, 1.0)
    over = np.maximum(gm + wm, 1.0)  # templates can sum slightly above 1 after rounding
    gm, wm = gm / over, wm / over
    csf = np.clip(np.clip(brain, 0.0, 1.0) - gm - wm, 0.0, 1.0)
    fractions = np.stack([csf, gm, wm])  # (3, H, W)
    names = ("CSF", "grey matter", "white matter")
    tis = [BRAIN_TISSUES_3T[n] for n in names]
    fields = _smooth_fields(np.random.default_rng(seed), size)

    if partial_volume == "fingerprints":
        outside = ndimage.distance_transform_edt(brain1 <= 0.5)  # mm from the brain mask
        layer = np.clip(_resample(((outside > 0) & (outside <= _LAYER_MM)).astype(np.float64), size), 0.0, 1.0)
        layer = np.minimum(layer, 1.0 - fractions.sum(axis=0))  # resampling may overlap by round-off
        fractions = np.concatenate([fractions, np.clip(layer, 0.0, 1.0)[None]])
        return _mixed_maps(names + ("short-T2 layer",), fractions, tis + [SHORT_T2_LAYER_3T], fields,
                           variation, mask_threshold)

    total = fractions.sum(axis=0)
    mask = total >= mask_threshold
    spins = np.stack([f * t["pd"] for f, t in zip(fractions, tis)])  # (3, H, W)
    pd = spins.sum(axis=0)
    safe = np.where(mask, pd, 1.0)
    r1 = sum(s / t["t1_ms"] for s, t in zip(spins, tis)) / safe
    r2 = sum(s / t["t2_ms"] for s, t in zip(spins, tis)) / safe
    a = variation
    t1 = np.where(mask, (1.0 / np.where(mask, r1, 1.0)) * (1.0 + a * fields[0]), 0.0)
    t2 = np.where(mask, (1.0 / np.where(mask, r2, 1.0)) * (1.0 + a * fields[1]), 0.0)
    pd = np.where(mask, pd * (1.0 + a * fields[2]), 0.0)

    labels = np.where(mask, 1 + np.argmax(fractions, axis=0), 0).astype(np.int16)
    if not (np.all(t1[mask] >= t2[mask]) and t1.max() <= 5000.0 and t2.max() <= 2000.0):
        raise RuntimeError("brain_phantom produced values outside the dictionary range")  # pragma: no cover
    return TissueMaps(t1, t2, pd, mask, labels, ("background",) + names)


def _disk(radius_mm: float) -> np.ndarray:
    r = int(np.ceil(radius_mm))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy**2 + xx**2) <= radius_mm**2


@lru_cache(maxsize=1)
def _head_fractions_1mm() -> np.ndarray:
    """(7, 233, 233) volume fractions of HEAD_TISSUES_3T's tissues on the 1-mm MNI grid (a partition)."""
    gm, wm, brain = _mni_slice(_MNI_Z0 + _HEAD_SLICE_MM)
    inside = brain > 0.5
    over = np.maximum(gm + wm, 1.0)
    gm, wm = np.where(inside, gm / over, 0.0), np.where(inside, wm / over, 0.0)
    csf = np.where(inside, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0)
    # Intracranial space: the brain outline closed with a 15-mm disc, which fills the notches
    # between the lobes (sphenoid ridges, occipital crest: bone here).
    pad = 20
    closed = ndimage.binary_closing(np.pad(inside, pad), structure=_disk(15.0))
    intracranial = ndimage.binary_fill_holes(closed)[pad:-pad, pad:-pad] | inside
    depth = ndimage.distance_transform_edt(intracranial)  # mm inside the outline
    out = ndimage.distance_transform_edt(~intracranial)  # mm outside it
    deep = depth > _DEEP_CSF_MM
    rim = (out > 0) & (out <= _HEAD_CSF_MM)
    skull = ((out > _HEAD_CSF_MM) & (out <= _HEAD_CSF_MM + _HEAD_SKULL_MM)) | (intracranial & ~inside)
    scalp = (out > _HEAD_CSF_MM + _HEAD_SKULL_MM) & (out <= _HEAD_CSF_MM + _HEAD_SKULL_MM + _HEAD_SCALP_MM)
    x0, y0, ax, by, deg = _LESION
    rows, cols = np.mgrid[:_MNI_FOV, :_MNI_FOV]
    x, y = cols - _MNI_X0 - x0, (_MNI_Y0 - rows) - y0
    th = np.deg2rad(deg)
    u, v = x * np.cos(th) + y * np.sin(th), -x * np.sin(th) + y * np.cos(th)
    lesion = ((u / ax) ** 2 + (v / by) ** 2 <= 1.0) & inside
    keep = np.where(lesion, 0.0, 1.0)
    # order of HEAD_TISSUES_3T: CSF (surface), CSF (deep), grey matter, white matter, lesion, bone, fat
    return np.stack([csf * keep * ~deep + rim, csf * keep * deep, gm * keep, wm * keep,
                     lesion.astype(np.float64), skull.astype(np.float64), scalp.astype(np.float64)])


def head_phantom(size: int = 128, *, seed: int = 0, variation: float = 0.04) -> TissueMaps:
    """A second head slice, built to hold what real scans hold, that nothing in the project was tuned on.

    Anatomy: the MNI ICBM152 2009a templates (as :func:`brain_phantom`, from the nilearn wheel) at
    another axial level, z = -20 mm (temporal lobes, midbrain, orbitofrontal cortex, top of the
    cerebellum). Around the brain, layers built by distance from the intracranial outline (the
    brain mask closed with a 15-mm disc, on the 1-mm grid): 2 mm of subarachnoid CSF, 6 mm of skull
    (bone, which also fills the notches the closing adds: sphenoid ridges, occipital crest) and
    5 mm of scalp fat. CSF of the brain mask lying more than 10 mm inside the outline (ventricles,
    basal cisterns, deep sulci) is "CSF (deep)", the rest "CSF (surface)". A lesion (solid tumour, an ellipse
    of 16 x 12 mm, 30 deg, centred at MNI x = 44, y = -15 mm in the right temporal lobe's white
    matter) replaces the tissue it covers. Tissue values (other sources than the book's slice):
    :data:`HEAD_TISSUES_3T`; bone's T2 (0.4 ms) lies below the dictionary grid and deep CSF's T2
    (2373 ms) above it.

    Partial volume is a PD-weighted sum of fingerprints (:class:`Compartments`); the maps
    ``t1_ms``, ``t2_ms``, ``pd`` are the reference rate mix (see :mod:`mrfbook.physics.phantom`).
    T1, T2 and PD of every compartment are scaled by ``1 + variation * g`` with three smooth random
    fields ``g`` (sigma 12 mm, max |g| = 1) drawn from ``seed`` on a stream of its own. The tissue
    mask is the head, as a user would outline it: every pixel whose total tissue fraction is >= 0.5,
    skull included (it carries almost no signal); only the air around the head is left out.

    At 128 x 128 the mask holds 7,420 pixels (the brain slice's: 6,212): 1,142 hold at least 10 %
    of their spins in bone, 808 have a reference T2 below 1 ms and 40 above 1991 ms (pure deep
    CSF), 112 hold some lesion, and with the paper's sequence 669 carry less than a quarter of the
    median tissue pixel's signal.

    Parameters
    ----------
    size : int
        Matrix size, in [16, 1024]; the field of view is 233 mm square.
    seed : int
        Seed of the smooth variation (>= 0, deterministic).
    variation : float
        Relative amplitude of the smooth variation, in [0, 0.2].

    Returns
    -------
    TissueMaps
        (size, size) maps, T1/T2 in ms, float64, zero outside ``tissue_mask``; ``labels`` index
        ``label_names`` (background, then the tissues of :data:`HEAD_TISSUES_3T` in order);
        ``compartments`` holds the seven tissues.

    Raises
    ------
    ValueError
        Naming the parameter and its allowed range.

    Explained in chapter 4, book/04_matching.md.
    """
    size = check_int("size", size, _MIN_SIZE, _MAX_SIZE)
    seed = check_int("seed", seed, 0)
    variation = _check_real("variation", variation, 0.0, 0.2)
    fractions = np.stack([np.clip(_resample(f, size), 0.0, 1.0) for f in _head_fractions_1mm()])
    fractions /= np.maximum(fractions.sum(axis=0), 1.0)  # round-off of the resampling
    names = tuple(HEAD_TISSUES_3T)
    fields = _smooth_fields(np.random.default_rng([seed, 2]), size)
    return _mixed_maps(names, fractions, [HEAD_TISSUES_3T[n] for n in names], fields, variation,
                       _HEAD_MASK_THRESHOLD)


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


#: The phantoms by name, each called as ``PHANTOMS[name](size)`` with its defaults: the book's
#: brain slice, the second (head) slice that nothing was tuned on, and the MR Shepp--Logan phantom.
PHANTOMS: dict[str, Callable[..., TissueMaps]] = {
    "brain": brain_phantom,
    "head": head_phantom,
    "shepp-logan": shepp_logan_phantom,
}


def phantom(name: str, size: int = 128) -> TissueMaps:
    """The phantom ``name`` of :data:`PHANTOMS` at ``size`` x ``size``, with its defaults.

    Parameters
    ----------
    name : {"brain", "head", "shepp-logan"}
        Which phantom.
    size : int
        Matrix size, in [16, 1024].

    Returns
    -------
    TissueMaps
        As returned by the phantom's function.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the allowed names) or a bad size.

    Explained in chapter 4, book/04_matching.md.
    """
    if not isinstance(name, str) or name not in PHANTOMS:
        raise ValueError(f"name must be one of {', '.join(repr(n) for n in PHANTOMS)}, got {name!r}")
    return PHANTOMS[name](size)


def random_phantom(size: int = 128, *, seed: int = 0, variation: float = 0.05) -> TissueMaps:
    """A random slice with the features of a scan and none of the book's phantoms' values or shapes.

    Training material for the network of chapter 11: it is never evaluated on, and the book's
    phantoms (:func:`brain_phantom`, :func:`head_phantom`) are never trained on. Drawn from ``seed``:

    - an elliptical object (semi-axes 55-90 % of the half field of view, any rotation) whose outline
      is blurred over 1-3 pixels, so that its edge holds partial-volume pixels with little signal;
    - 3-6 tissues, each with T1 log-uniform in [250, 4500] ms, T2 = T1 x r with r log-uniform in
      [0.02, 0.6] (capped at 2500 ms) and PD uniform in [0.5, 1]; filling the object as a soft
      partition (a softmax of smooth random fields, sharpness drawn per phantom), so that tissue
      borders are sums of fingerprints;
    - with probability 1/2 a rim 2-8 % of the field of view thick of a tissue with almost no
      signal (T2 log-uniform in [0.3, 3] ms, PD 0.05-0.3), like bone;
    - T1, T2 and PD of every tissue scaled by ``1 + variation x g`` with smooth random fields ``g``.

    Parameters
    ----------
    size : int
        Matrix size, in [16, 1024].
    seed : int
        Seed (>= 0); the same seed gives the same phantom.
    variation : float
        Relative amplitude of the smooth variation, in [0, 0.2].

    Returns
    -------
    TissueMaps
        With ``compartments`` (the signal is the weighted sum of the tissues' fingerprints); the
        maps are the rate-mix reference; the mask holds pixels whose total tissue fraction is >= 0.5.

    Explained in chapter 11, book/11_real_inputs.md.
    """
    size = check_int("size", size, _MIN_SIZE, _MAX_SIZE)
    seed = check_int("seed", seed, 0)
    variation = _check_real("variation", variation, 0.0, 0.2)
    rng = np.random.default_rng([seed, 11])
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size * 2.0 - 1.0
    a, b = rng.uniform(0.55, 0.9, 2)
    th = rng.uniform(0, np.pi)
    xr, yr = xx * np.cos(th) + yy * np.sin(th), -xx * np.sin(th) + yy * np.cos(th)
    radius = np.sqrt((xr / a) ** 2 + (yr / b) ** 2)
    support = ndimage.gaussian_filter((radius <= 1.0).astype(np.float64), rng.uniform(0.5, 1.5))
    n_tissues = int(rng.integers(3, 7))
    t1 = np.exp(rng.uniform(np.log(250.0), np.log(4500.0), n_tissues))
    t2 = np.minimum(t1 * np.exp(rng.uniform(np.log(0.02), np.log(0.6), n_tissues)), 2500.0)
    pd = rng.uniform(0.5, 1.0, n_tissues)
    sharpness = rng.uniform(2.0, 12.0)
    smooth = rng.uniform(3.0, 10.0) * size / 128.0
    logits = np.stack([ndimage.gaussian_filter(rng.standard_normal((size, size)), smooth, mode="wrap")
                       for _ in range(n_tissues)])
    logits /= logits.std(axis=(1, 2), keepdims=True)
    soft = np.exp(sharpness * (logits - logits.max(axis=0)))
    inside = soft / soft.sum(axis=0)
    tissues = [{"t1_ms": float(t1[k]), "t2_ms": float(t2[k]), "pd": float(pd[k])} for k in range(n_tissues)]
    names = [f"tissue {k + 1}" for k in range(n_tissues)]
    fractions = inside * support
    if rng.random() < 0.5:
        thick = rng.uniform(0.02, 0.08)
        rim = ndimage.gaussian_filter(((radius <= 1.0) & (radius > 1.0 - thick / min(a, b))).astype(np.float64), 0.7)
        rim = np.minimum(rim, support)
        fractions = fractions * (1.0 - rim) + 0.0
        tissues.append({"t1_ms": float(rng.uniform(200, 500)), "t2_ms": float(np.exp(rng.uniform(np.log(0.3), np.log(3.0)))),
                        "pd": float(rng.uniform(0.05, 0.3))})
        names.append("rim")
        fractions = np.concatenate([fractions, rim[None]])
    fields = [ndimage.gaussian_filter(rng.standard_normal((size, size)), 12.0 * size / 233.0, mode="wrap")
              for _ in range(3)]
    fields = [g / np.abs(g).max() for g in fields]
    return _mixed_maps(tuple(names), np.clip(fractions, 0.0, 1.0), tissues, fields, variation, 0.5)
