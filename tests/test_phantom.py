"""Tests for mrfbook.physics.phantom (brain, head and Shepp-Logan phantoms, compartments, registry)."""

import socket

import numpy as np
import pytest
from scipy import ndimage

from mrfbook.physics import phantom as phantom_module
from mrfbook.physics.dictionary import paper_grid
from mrfbook.physics.phantom import (
    BRAIN_TISSUES_3T,
    HEAD_TISSUES_3T,
    PHANTOMS,
    SHEPP_LOGAN_TISSUES_3T,
    SHORT_T2_LAYER_3T,
    Compartments,
    TissueMaps,
    brain_phantom,
    head_phantom,
    mni152_data_dir,
    phantom,
    shepp_logan_phantom,
)
from mrfbook.physics.sequence import paper_sequence
from mrfbook.recon.acquisition import image_stack

GRID_T1, GRID_T2 = paper_grid()
T1_MAX, T2_MIN, T2_MAX = GRID_T1.max(), GRID_T2.min(), GRID_T2.max()  # 4991, 1, 1991 ms


@pytest.fixture(scope="module")
def brain():
    return brain_phantom(128)


@pytest.fixture(scope="module")
def brain_rates():
    return brain_phantom(128, partial_volume="rates")


@pytest.fixture(scope="module")
def head():
    return head_phantom(128)


def _signal_norm(maps, n_frames=60):
    """Per-pixel norm of the fully sampled signal, (H, W)."""
    return np.linalg.norm(image_stack(maps, paper_sequence(n_frames)).real, axis=2)


def _old_brain_phantom(size, slice_mm=18.0, seed=0, variation=0.04, mask_threshold=0.5):
    """The brain phantom as it was before compartments (rate mixing), written out independently."""
    gm, wm, brain = phantom_module._mni_slice(phantom_module._MNI_Z0 + int(round(float(slice_mm))))
    gm, wm, brain = (phantom_module._resample(a, size) for a in (gm, wm, brain))
    gm, wm = np.clip(gm, 0.0, 1.0), np.clip(wm, 0.0, 1.0)
    over = np.maximum(gm + wm, 1.0)
    gm, wm = gm / over, wm / over
    csf = np.clip(np.clip(brain, 0.0, 1.0) - gm - wm, 0.0, 1.0)
    fractions = np.stack([csf, gm, wm])
    mask = fractions.sum(axis=0) >= mask_threshold
    tis = [BRAIN_TISSUES_3T[n] for n in ("CSF", "grey matter", "white matter")]
    spins = np.stack([f * t["pd"] for f, t in zip(fractions, tis)])
    pd = spins.sum(axis=0)
    safe = np.where(mask, pd, 1.0)
    r1 = sum(s / t["t1_ms"] for s, t in zip(spins, tis)) / safe
    r2 = sum(s / t["t2_ms"] for s, t in zip(spins, tis)) / safe
    rng = np.random.default_rng(seed)
    fields = []
    for _ in range(3):
        g = ndimage.gaussian_filter(rng.standard_normal((233, 233)), sigma=12.0, mode="wrap")
        g /= np.abs(g).max()
        fields.append(phantom_module._resample(g, size) if size != 233 else g)
    t1 = np.where(mask, (1.0 / np.where(mask, r1, 1.0)) * (1.0 + variation * fields[0]), 0.0)
    t2 = np.where(mask, (1.0 / np.where(mask, r2, 1.0)) * (1.0 + variation * fields[1]), 0.0)
    pd = np.where(mask, pd * (1.0 + variation * fields[2]), 0.0)
    labels = np.where(mask, 1 + np.argmax(fractions, axis=0), 0).astype(np.int16)
    return t1, t2, pd, mask, labels


# ---------------------------------------------------------------- brain phantom


def test_brain_shapes_dtypes(brain, brain_rates):
    for p in (brain, brain_rates):
        for a in (p.t1_ms, p.t2_ms, p.pd):
            assert a.shape == (128, 128) and a.dtype == np.float64
        assert p.tissue_mask.dtype == bool and p.labels.shape == (128, 128)
    assert brain.label_names == ("background", "CSF", "grey matter", "white matter", "short-T2 layer")
    assert brain_rates.label_names == ("background", "CSF", "grey matter", "white matter")
    c = brain.compartments
    assert isinstance(c, Compartments) and brain_rates.compartments is None
    assert c.names == ("CSF", "grey matter", "white matter", "short-T2 layer") and c.n_compartments == 4
    for a in (c.weight, c.t1_ms, c.t2_ms):
        assert a.shape == (4, 128, 128) and a.dtype == np.float64


@pytest.mark.parametrize("kwargs", [{}, {"size": 64}, {"size": 48, "slice_mm": -10, "seed": 3, "variation": 0.1,
                                                         "mask_threshold": 0.3}])
def test_rates_reproduces_the_old_phantom_exactly(kwargs):
    size = kwargs.pop("size", 128)
    new = brain_phantom(size, partial_volume="rates", **kwargs)
    for got, want in zip((new.t1_ms, new.t2_ms, new.pd, new.tissue_mask, new.labels), _old_brain_phantom(size, **kwargs)):
        np.testing.assert_array_equal(got, want)


def test_rates_phantom_pinned_values(brain_rates):
    # sums of the book's phantom before compartments were added (guards the helpers the copy above shares)
    m = brain_rates.tissue_mask
    assert m.sum() == 5930
    np.testing.assert_allclose([brain_rates.t1_ms.sum(), brain_rates.t2_ms.sum(), brain_rates.pd.sum()],
                               [8076100.128889541, 679617.756512809, 4517.155157226275], rtol=1e-9)


def test_brain_deterministic_and_seeded(brain):
    again = brain_phantom(128)
    np.testing.assert_array_equal(again.t1_ms, brain.t1_ms)
    np.testing.assert_array_equal(again.pd, brain.pd)
    np.testing.assert_array_equal(again.compartments.weight, brain.compartments.weight)
    other = brain_phantom(128, seed=1)
    np.testing.assert_array_equal(other.tissue_mask, brain.tissue_mask)
    assert not np.allclose(other.t1_ms, brain.t1_ms)


def test_reference_maps_are_the_spin_weighted_rate_mix(brain):
    c, m = brain.compartments, brain.tissue_mask
    w = c.weight
    on = w > 0
    pd = w.sum(axis=0)
    r1 = np.where(on, w / np.where(on, c.t1_ms, 1.0), 0.0).sum(axis=0) / np.where(pd > 0, pd, 1.0)
    r2 = np.where(on, w / np.where(on, c.t2_ms, 1.0), 0.0).sum(axis=0) / np.where(pd > 0, pd, 1.0)
    np.testing.assert_allclose(brain.pd[m], pd[m], rtol=1e-12)
    np.testing.assert_allclose(brain.t1_ms[m], 1.0 / r1[m], rtol=1e-12)
    np.testing.assert_allclose(brain.t2_ms[m], 1.0 / r2[m], rtol=1e-12)
    for a in (brain.t1_ms, brain.t2_ms, brain.pd):
        assert np.all(a[~m] == 0)
    assert np.all(brain.t1_ms[m] >= brain.t2_ms[m])


def test_without_the_layer_the_two_models_agree(brain, brain_rates):
    # the same tissues mixed the same way: only the signal model differs
    c = brain.compartments
    both = brain.tissue_mask & brain_rates.tissue_mask & (c.weight[3] == 0)
    assert both.sum() > 0.85 * brain_rates.tissue_mask.sum()  # 5,336 of 5,930
    for a, b in ((brain.t1_ms, brain_rates.t1_ms), (brain.t2_ms, brain_rates.t2_ms), (brain.pd, brain_rates.pd)):
        np.testing.assert_allclose(a[both], b[both], rtol=1e-5)  # up to the dropped fractions below 1e-6
    assert brain_rates.tissue_mask[~brain.tissue_mask].sum() == 0  # the layer only adds pixels


def test_partial_volume_is_a_sum_of_fingerprints(brain):
    c, m = brain.compartments, brain.tissue_mask
    mixed = m & ((c.weight > 0.1 * c.weight.sum(axis=0)).sum(axis=0) >= 2)
    assert mixed.sum() > 0.2 * m.sum()  # many pixels hold two tissues or more
    i, j = np.argwhere(mixed)[len(np.argwhere(mixed)) // 2]
    from mrfbook.physics.epg import simulate_fisp

    seq = paper_sequence(40)
    on = c.weight[:, i, j] > 0
    sigs = simulate_fisp(seq, c.t1_ms[on, i, j], c.t2_ms[on, i, j])
    want = (c.weight[on, i, j][:, None] * sigs).sum(axis=0)
    got = image_stack(brain, seq)[i, j].real
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    single = brain.pd[i, j] * simulate_fisp(seq, [brain.t1_ms[i, j]], [brain.t2_ms[i, j]])[0]
    assert np.linalg.norm(got - single) > 1e-3 * np.linalg.norm(got)  # not the rate mix's fingerprint


def test_brain_edge_pixels_have_little_signal_and_short_t2(brain, brain_rates):
    c, m = brain.compartments, brain.tissue_mask
    layer = c.weight[3]
    assert np.all(c.t2_ms[3][layer > 0] < T2_MIN)  # below the dictionary grid
    np.testing.assert_allclose(np.median(c.t2_ms[3][layer > 0]), SHORT_T2_LAYER_3T["t2_ms"], rtol=0.05)
    edge = m & ~brain_rates.tissue_mask
    assert 0.02 * m.sum() < edge.sum() < 0.08 * m.sum()  # a few per cent of the mask (282 of 6,212)
    assert np.all(layer[edge] > 0)
    norm = _signal_norm(brain)
    low = m & (norm < 0.25 * np.median(norm[m]))
    assert 0.01 * m.sum() < low.sum() < 0.06 * m.sum()  # 166 pixels with the paper's sequence
    assert np.all(layer[low] > 0)  # the low-signal pixels are the layer's
    assert 0 < np.sum(m & (brain.t2_ms < T2_MIN))  # some reference T2 are out of the grid too


def test_brain_values_in_dictionary_range(brain, brain_rates):
    m = brain_rates.tissue_mask
    t1, t2, pd = brain_rates.t1_ms[m], brain_rates.t2_ms[m], brain_rates.pd[m]
    assert np.all(t1 >= t2)
    assert t1.max() <= 5000 and t2.max() <= 2000
    wm, csf = BRAIN_TISSUES_3T["white matter"], BRAIN_TISSUES_3T["CSF"]
    assert t1.min() >= 0.9 * wm["t1_ms"] and t1.max() <= 1.1 * csf["t1_ms"]
    assert t2.min() >= 0.9 * wm["t2_ms"] and t2.max() <= 1.1 * csf["t2_ms"]
    assert 0 < pd.min() and pd.max() <= 1.1
    # the default phantom: the brain's own compartments stay in range, only the layer leaves it
    c = brain.compartments
    brain_on = c.weight[:3] > 0
    assert np.all((c.t1_ms[:3][brain_on] <= T1_MAX) & (c.t2_ms[:3][brain_on] >= T2_MIN)
                  & (c.t2_ms[:3][brain_on] <= T2_MAX))
    assert np.all(c.t1_ms[c.weight > 0] >= c.t2_ms[c.weight > 0])


def test_brain_background_zero(brain):
    bg = ~brain.tissue_mask
    for a in (brain.t1_ms, brain.t2_ms, brain.pd):
        assert np.all(a[bg] == 0)
    # corners are background, centre is tissue
    assert not brain.tissue_mask[0, 0] and brain.tissue_mask[64, 64]
    assert np.all(brain.labels[bg] == 0) and np.all(brain.labels[~bg] > 0)
    assert np.all(brain.compartments.weight[:, 0, 0] == 0)


def test_brain_tissue_fractions_plausible(brain):
    counts = np.bincount(brain.labels[brain.tissue_mask], minlength=5)[1:]
    frac = counts / counts.sum()  # CSF, GM, WM, layer
    assert 0.02 < frac[0] < 0.25
    assert 0.3 < frac[1] < 0.65 and 0.3 < frac[2] < 0.65
    assert 0.01 < frac[3] < 0.08
    # the brain fills a plausible part of the 233-mm field of view
    assert 0.25 < brain.tissue_mask.mean() < 0.6
    # values vary continuously: many distinct values, not just three tissues
    assert np.unique(brain.t2_ms[brain.tissue_mask]).size > 1000


def test_brain_pure_tissue_values_near_literature():
    for model in ("fingerprints", "rates"):
        p = brain_phantom(64, variation=0.0, partial_volume=model)
        wm = p.labels == 3
        # the most white pixels are pure WM: T1 equals the tabulated value
        assert np.isclose(np.min(p.t1_ms[wm]), BRAIN_TISSUES_3T["white matter"]["t1_ms"], rtol=0.02)


@pytest.mark.parametrize("size", [16, 100, 257])
def test_brain_other_sizes(size):
    p = brain_phantom(size)
    assert p.t1_ms.shape == (size, size) and p.compartments.weight.shape == (4, size, size)
    assert 0.25 < p.tissue_mask.mean() < 0.6


@pytest.mark.parametrize("bad", [15, 1025, 12.0, "128", True])
def test_size_validation(bad):
    for make in (brain_phantom, head_phantom, shepp_logan_phantom):
        with pytest.raises(ValueError, match=r"size must be an integer in \[16, 1024\]"):
            make(bad)


def test_other_parameter_validation():
    with pytest.raises(ValueError, match=r"slice_mm must be in \[-40, 60\]"):
        brain_phantom(32, slice_mm=90.0)
    with pytest.raises(ValueError, match=r"variation must be in \[0, 0.2\]"):
        brain_phantom(32, variation=0.5)
    with pytest.raises(ValueError, match=r"variation must be in \[0, 0.2\]"):
        head_phantom(32, variation=-0.1)
    with pytest.raises(ValueError, match=r"mask_threshold must be in \(0, 1\]"):
        brain_phantom(32, mask_threshold=0.0)
    with pytest.raises(ValueError, match="mask_threshold"):
        brain_phantom(32, mask_threshold=float("nan"))
    with pytest.raises(ValueError, match="partial_volume must be 'fingerprints' or 'rates'"):
        brain_phantom(32, partial_volume="exchange")
    for make in (brain_phantom, head_phantom):
        with pytest.raises(ValueError, match="seed must be an integer >= 0"):
            make(32, seed=-1)
        with pytest.raises(ValueError, match="seed"):
            make(32, seed=1.5)


def test_templates_ship_with_nilearn_and_no_network(monkeypatch):
    folder = mni152_data_dir()
    for kind in ("gm", "wm", "t1"):
        assert (folder / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    phantom_module._mni_slice.cache_clear()
    phantom_module._head_fractions_1mm.cache_clear()
    p = brain_phantom(32, slice_mm=10.0)
    assert p.tissue_mask.any()
    assert head_phantom(32).tissue_mask.any()


# ---------------------------------------------------------------- compartments


def test_compartments_validate_shapes_and_mix_rates():
    w = np.zeros((2, 1, 2))
    w[:, 0, 0] = (0.6, 0.2)
    t1 = np.array([[[1000.0, 0.0]], [[200.0, 0.0]]])
    t2 = np.array([[[100.0, 0.0]], [[0.5, 0.0]]])
    c = Compartments(["a", "b"], w, t1, t2)
    ref_t1, ref_t2, pd = c.reference_maps()
    assert pd[0, 0] == pytest.approx(0.8) and pd[0, 1] == 0
    assert ref_t1[0, 0] == pytest.approx(0.8 / (0.6 / 1000 + 0.2 / 200))
    assert ref_t2[0, 0] == pytest.approx(0.8 / (0.6 / 100 + 0.2 / 0.5))
    assert ref_t1[0, 1] == 0 and ref_t2[0, 1] == 0
    with pytest.raises(ValueError, match="weight must be a"):
        Compartments(["a"], np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="t2_ms must have the weight's shape"):
        Compartments(["a", "b"], w, t1, t2[:1])
    with pytest.raises(ValueError, match="names must name the K = 2"):
        Compartments(["a"], w, t1, t2)


# ---------------------------------------------------------------- head phantom


def test_head_tissue_values_are_the_cited_ones():
    t = HEAD_TISSUES_3T
    assert (t["white matter"]["t1_ms"], t["white matter"]["t2_ms"]) == (1084.0, 69.0)  # Stanisz 2005
    assert (t["grey matter"]["t1_ms"], t["grey matter"]["t2_ms"]) == (1820.0, 99.0)
    assert (t["CSF (surface)"]["t1_ms"], t["CSF (surface)"]["t2_ms"]) == (4308.7, 1885.5)  # PMC10696635
    assert (t["CSF (deep)"]["t1_ms"], t["CSF (deep)"]["t2_ms"]) == (4454.0, 2372.9)
    assert t["lesion"]["t1_ms"] == pytest.approx(1669, abs=1) and t["lesion"]["t2_ms"] == pytest.approx(111, abs=1)
    assert (t["bone"]["t1_ms"], t["bone"]["t2_ms"], t["bone"]["pd"]) == (134.0, 0.4, 0.22)
    assert (t["fat"]["t1_ms"], t["fat"]["t2_ms"]) == (382.0, 68.0)  # Gold 2004
    for name, v in t.items():
        assert v["t1_ms"] >= v["t2_ms"] and 0 < v["pd"] <= 1, name
        # none of them is the book's slice's value
        assert all(v["t1_ms"] != b["t1_ms"] for b in BRAIN_TISSUES_3T.values()), name


def test_head_shapes_labels_and_determinism(head):
    assert head.label_names == ("background",) + tuple(HEAD_TISSUES_3T)
    c = head.compartments
    assert c.names == tuple(HEAD_TISSUES_3T) and c.weight.shape == (7, 128, 128)
    for a in (head.t1_ms, head.t2_ms, head.pd):
        assert a.shape == (128, 128) and a.dtype == np.float64
    again = head_phantom(128)
    np.testing.assert_array_equal(again.t2_ms, head.t2_ms)
    other = head_phantom(128, seed=1)
    np.testing.assert_array_equal(other.tissue_mask, head.tissue_mask)
    assert not np.allclose(other.t1_ms, head.t1_ms)
    # its variation is not the brain slice's (a stream of its own)
    b = brain_phantom(128)
    both = head.tissue_mask & b.tissue_mask
    assert not np.allclose(head.compartments.t1_ms[3][both] / 1084.0, b.compartments.t1_ms[2][both] / 830.0)
    counts = np.bincount(head.labels[head.tissue_mask], minlength=8)
    assert np.all(counts[1:] > 0), counts  # every tissue dominates somewhere


def test_head_has_out_of_range_components(head):
    c, m = head.compartments, head.tissue_mask
    names = c.names
    bone, deep = names.index("bone"), names.index("CSF (deep)")
    assert np.all(c.t2_ms[bone][c.weight[bone] > 0] < T2_MIN)
    assert np.all(c.t2_ms[deep][c.weight[deep] > 0] > T2_MAX)
    bone_share = c.weight[bone] / np.maximum(c.weight.sum(axis=0), 1e-300)
    assert (m & (bone_share >= 0.1)).sum() > 500  # a ring of skull around the brain (1,142 pixels)
    assert (m & (head.t2_ms < T2_MIN)).sum() > 300  # reference T2 below the grid (808)
    assert (m & (head.t2_ms > T2_MAX)).sum() > 0  # and above it: pure deep CSF (40)
    # the simulation takes them as they are
    x = image_stack(head, paper_sequence(30))
    assert np.all(np.isfinite(x)) and np.abs(x[m]).max() > 0


def test_head_partial_volume_and_lesion(head):
    c, m = head.compartments, head.tissue_mask
    share = c.weight / np.maximum(c.weight.sum(axis=0), 1e-300)
    mixed = m & ((share >= 0.1).sum(axis=0) >= 2)
    assert mixed.sum() > 0.3 * m.sum()
    lesion = c.names.index("lesion")
    has = c.weight[lesion] > 0
    assert 40 < has.sum() < 200 and np.all(m[has])  # 112 pixels, all inside the mask
    assert ((head.labels == 1 + lesion) & m).sum() > 20
    pure = share[lesion] > 0.99
    assert pure.any()
    np.testing.assert_allclose(np.median(c.t2_ms[lesion][pure]), HEAD_TISSUES_3T["lesion"]["t2_ms"], rtol=0.05)
    edge = has & (share[lesion] < 0.9)  # its border mixes with the brain around it
    assert edge.sum() >= 10
    # lesion in the right temporal lobe (MNI x > 0: the right half of the image's columns)
    assert np.argwhere(has)[:, 1].mean() > 64


def test_head_mask_is_the_head(head):
    m = head.tissue_mask
    c = head.compartments
    total = c.weight.sum(axis=0)
    assert not m[0, 0] and m[64, 64]
    assert 0.35 < m.mean() < 0.7
    # one piece without holes: the head as a user would outline it
    n_parts = ndimage.label(m)[1]
    assert n_parts == 1 and np.array_equal(ndimage.binary_fill_holes(m), m)
    # air outside: what lies outside the mask is a thin fringe of partial pixels
    assert np.all(total[~m] < 0.5) and (~m & (total > 0)).sum() < 0.1 * m.sum()
    for a in (head.t1_ms, head.t2_ms, head.pd):
        assert np.all(a[~m] == 0)
    # the skull and scalp surround the brain: the outermost mask pixels are mostly fat
    outer = m & ~ndimage.binary_erosion(m)
    fat = c.names.index("fat")
    assert np.mean(head.labels[outer] == 1 + fat) > 0.8
    # edges and skull carry little signal
    norm = _signal_norm(head)
    low = m & (norm < 0.25 * np.median(norm[m]))
    assert 0.03 * m.sum() < low.sum() < 0.2 * m.sum()  # 669 with the paper's sequence


def test_head_other_sizes():
    for size in (16, 64):
        p = head_phantom(size)
        assert p.t1_ms.shape == (size, size) and 0.35 < p.tissue_mask.mean() < 0.7


# ---------------------------------------------------------------- registry


def test_registry_names_and_calls():
    assert list(PHANTOMS) == ["brain", "head", "shepp-logan"]
    for name, make in PHANTOMS.items():
        p = phantom(name, 32)
        q = make(32)
        assert isinstance(p, TissueMaps) and p.shape == (32, 32)
        np.testing.assert_array_equal(p.t1_ms, q.t1_ms)
    assert phantom("brain").shape == (128, 128)
    with pytest.raises(ValueError, match="name must be one of 'brain', 'head', 'shepp-logan', got 'liver'"):
        phantom("liver", 32)
    with pytest.raises(ValueError, match="name must be one of"):
        phantom(None, 32)
    with pytest.raises(ValueError, match="size"):
        phantom("head", 8)


# ---------------------------------------------------------------- Shepp-Logan


def test_shepp_logan_values():
    p = shepp_logan_phantom(128)
    names = p.label_names
    assert names[0] == "background" and p.compartments is None
    for i, name in enumerate(names[1:], start=1):
        sel = p.labels == i
        assert sel.any(), name
        t = SHEPP_LOGAN_TISSUES_3T[name]
        assert np.all(p.t1_ms[sel] == t["t1_ms"]) and np.all(p.t2_ms[sel] == t["t2_ms"])
        assert np.all(p.pd[sel] == t["pd"])
    # Gach et al. 2008 at 3 T (rounded, ms)
    lab = {n: i for i, n in enumerate(names)}
    assert round(p.t1_ms[p.labels == lab["white matter"]][0]) == 887
    assert round(p.t1_ms[p.labels == lab["grey matter"]][0]) == 1295
    assert round(p.t1_ms[p.labels == lab["scalp"]][0]) == 377
    assert p.t2_ms[p.labels == lab["CSF"]][0] == 1990
    assert np.all(p.t1_ms >= p.t2_ms)
    assert np.all(p.t1_ms[~p.tissue_mask] == 0)
    # ventricles: the centre row through y = 0 meets CSF left and right of centre
    row = p.labels[64]
    assert row[50] == lab["CSF"] and row[78] == lab["CSF"] and row[64] == lab["grey matter"]
    # white-matter ellipse above the centre, grey matter above it
    assert p.labels[20, 64] == lab["grey matter"] and p.labels[37, 64] == lab["white matter"]
