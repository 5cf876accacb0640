"""Tests of mrfbook.physics.dictionary: grids, the Dictionary container, storage and the cache."""

from __future__ import annotations

import numpy as np
import pytest

import mrfbook.physics.dictionary as dmod
from mrfbook.physics.dictionary import (
    PAPER_N_ATOMS,
    Dictionary,
    StaleDictionaryError,
    b1_grid,
    build_dictionary,
    cache_path,
    cached_dictionary,
    grid_image,
    paper_grid,
    shifted_test_grid,
)
from mrfbook.physics.epg import simulate_fisp
from mrfbook.physics.sequence import paper_sequence


@pytest.fixture(scope="module")
def sequence():
    return paper_sequence()


@pytest.fixture(scope="module")
def small_grid():
    # 21 x 5 axes with T1 >= T2: a coarse version of the paper grid
    return paper_grid(step_ms=250.0)


@pytest.fixture(scope="module")
def small_dictionary(sequence, small_grid):
    return build_dictionary(sequence, *small_grid)


def _pairs(t1, t2):
    return set(zip(np.round(t1, 6).tolist(), np.round(t2, 6).tolist()))


# -- grids -----------------------------------------------------------------------------------------
def test_paper_grid_has_80100_atoms_with_the_papers_ends():
    t1, t2 = paper_grid()
    assert t1.shape == t2.shape == (PAPER_N_ATOMS,) == (80_100,)
    assert t1.dtype == t2.dtype == np.float64
    assert np.all(t1 >= t2)
    assert (t1.min(), t1.max(), t2.min(), t2.max()) == (1.0, 4991.0, 1.0, 1991.0)
    assert np.array_equal(np.unique(t1), 1.0 + 10.0 * np.arange(500))
    assert np.array_equal(np.unique(t2), 1.0 + 10.0 * np.arange(200))
    assert len(_pairs(t1, t2)) == t1.size  # no duplicates
    # every physical pair of the two axes is present: 500 * 200 - (0 + 1 + ... + 199)
    assert t1.size == 500 * 200 - 199 * 200 // 2


def test_shifted_test_grid_shares_no_pair_with_training_grid():
    t1, t2 = shifted_test_grid()
    assert (t1.min(), t1.max(), t2.min(), t2.max()) == (6.0, 4996.0, 6.0, 1996.0)
    assert np.all(t1 >= t2)
    assert t1.size == PAPER_N_ATOMS
    train = _pairs(*paper_grid())
    assert not (_pairs(t1, t2) & train)
    # not even a single coordinate value in common
    assert not set(np.unique(t1)) & set(np.unique(paper_grid()[0]))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"step_ms": 0.0}, "step_ms"),
        ({"step_ms": np.nan}, "step_ms"),
        ({"t1_start_ms": -1.0}, "t1_start_ms"),
        ({"t2_max_ms": 0.5}, "t2_max_ms"),
        ({"t1_max_ms": np.inf}, "t1_max_ms"),
    ],
)
def test_paper_grid_rejects_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        paper_grid(**kwargs)


@pytest.mark.parametrize("offset", [0.0, 10.0, -5.0, 12.0, np.nan])
def test_shifted_grid_rejects_offsets_on_the_training_grid(offset):
    with pytest.raises(ValueError, match="offset_ms"):
        shifted_test_grid(offset)


def test_b1_grid_repeats_pairs_per_b1():
    t1, t2, b1 = b1_grid([100.0, 200.0], [10.0, 20.0], [0.8, 1.0, 1.2])
    assert t1.tolist() == [100, 200] * 3 and t2.tolist() == [10, 20] * 3
    assert b1.tolist() == [0.8, 0.8, 1.0, 1.0, 1.2, 1.2]
    with pytest.raises(ValueError, match="b1_values"):
        b1_grid([100.0], [10.0], [0.0])


def test_grid_image_places_values_and_leaves_missing_pairs_nan():
    t1, t2 = paper_grid(step_ms=1000.0)  # T1 1..4001 (5 values), T2 1, 1001 (2 values)
    t1_axis, t2_axis, image = grid_image(t1, t2, t1 + 1e-3 * t2)
    assert image.shape == (2, 5) and t2_axis.tolist() == [1.0, 1001.0]
    assert image[1, 0] != image[1, 0]  # T1 = 1 < T2 = 1001: no pair, NaN
    assert image[1, 2] == pytest.approx(2001.0 + 1.001)
    assert np.sum(np.isfinite(image)) == t1.size
    with pytest.raises(ValueError, match="values"):
        grid_image(t1, t2, t1[:-1])
    with pytest.raises(ValueError, match="repeated"):
        grid_image(np.r_[t1, t1[:1]], np.r_[t2, t2[:1]], np.r_[t1, t1[:1]])


# -- the container ---------------------------------------------------------------------------------
def test_dictionary_matches_epg_and_reports_shapes(sequence, small_grid, small_dictionary):
    d = small_dictionary
    k = small_grid[0].size
    assert (d.n_atoms, d.n_timepoints) == (k, sequence.n_timepoints)
    assert d.atoms.dtype == np.float32
    assert d.lut.shape == (k, 2) and np.array_equal(d.lut[:, 0], small_grid[0])
    assert d.nbytes == k * sequence.n_timepoints * 4 + 2 * k * 8
    direct = simulate_fisp(sequence, small_grid[0], small_grid[1])
    np.testing.assert_allclose(d.atoms, direct, rtol=0, atol=1e-7)
    # raw atoms carry PD = 1 signal levels: not normalised
    assert not np.allclose(d.norms, 1.0)


def test_nearest_finds_the_closest_grid_pair(small_dictionary):
    d = small_dictionary
    i = d.nearest(760.0, 240.0)
    assert (d.t1_ms[i], d.t2_ms[i]) == (751.0, 251.0)
    assert d.nearest(d.t1_ms[7], d.t2_ms[7]) == 7
    with pytest.raises(ValueError, match="t2_ms"):
        d.nearest(100.0, -3.0)


def test_normalised_rows_have_unit_norm_and_keep_direction(small_dictionary):
    d = small_dictionary
    n = d.normalised()
    assert n.dtype == np.float32 and n.shape == d.atoms.shape
    np.testing.assert_allclose(np.linalg.norm(n.astype(np.float64), axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(n * d.norms[:, None], d.atoms, rtol=1e-5, atol=1e-7)
    assert d.normalised() is n  # computed once
    with pytest.raises(ValueError):
        n[0, 0] = 1.0  # read-only: the cached copy cannot be corrupted


def test_zero_atom_stays_zero_when_normalised(sequence):
    atoms = np.ones((2, sequence.n_timepoints), np.float32)
    atoms[1] = 0
    d = Dictionary(atoms, [10.0, 20.0], [5.0, 5.0], sequence)
    assert np.all(d.normalised()[1] == 0)
    np.testing.assert_allclose(np.linalg.norm(d.normalised()[0]), 1.0, rtol=1e-6)


def test_dictionary_constructor_validates(sequence):
    L = sequence.n_timepoints
    with pytest.raises(ValueError, match="atoms"):
        Dictionary(np.zeros(L, np.float32), [1.0], [1.0], sequence)
    with pytest.raises(ValueError, match="atoms"):
        Dictionary(np.zeros((1, L), np.complex64), [1.0], [1.0], sequence)
    with pytest.raises(ValueError, match="n_timepoints"):
        Dictionary(np.zeros((1, L + 1), np.float32), [1.0], [1.0], sequence)
    with pytest.raises(ValueError, match="t1_ms"):
        Dictionary(np.zeros((2, L), np.float32), [1.0], [1.0], sequence)
    with pytest.raises(ValueError, match="b1"):
        Dictionary(np.zeros((1, L), np.float32), [1.0], [1.0], sequence, b1_scale=[1.0, 1.0])


@pytest.mark.parametrize(
    "t1, t2, name",
    [
        ([100.0, 200.0], None, "t1_ms and t2_ms"),
        ([100.0, 200.0], [10.0], "same shape"),
        ([100.0, -1.0], [10.0, 10.0], "t1_ms"),
        ([100.0, 200.0], [10.0, np.nan], "t2_ms"),
        ([[100.0]], [[10.0]], "t1_ms"),
        ([], [], "t1_ms"),
    ],
)
def test_build_dictionary_rejects_bad_grids(sequence, t1, t2, name):
    with pytest.raises(ValueError, match=name):
        build_dictionary(sequence, t1, t2)


def test_build_dictionary_allows_unphysical_pairs_when_asked(sequence):
    d = build_dictionary(sequence, [50.0, 1000.0], [100.0, 100.0])  # T1 < T2 in the first entry
    assert d.n_atoms == 2 and np.all(np.isfinite(d.atoms))


def test_b1_dictionary_has_three_column_lut_and_b1_changes_atoms(sequence):
    t1, t2, b1 = b1_grid([800.0], [80.0], [0.8, 1.0])
    d = build_dictionary(sequence, t1, t2, b1=b1)
    assert d.lut.shape == (2, 3) and d.parameter_names == ("t1_ms", "t2_ms", "b1_scale")
    assert not np.allclose(d.atoms[0], d.atoms[1], atol=1e-3)
    with pytest.raises(ValueError, match="b1"):
        build_dictionary(sequence, t1, t2, b1=[1.0])


# -- storage ---------------------------------------------------------------------------------------
def test_save_load_roundtrip(tmp_path, sequence, small_dictionary):
    path = small_dictionary.save(tmp_path / "sub" / "d.npz")
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["d.npz"]  # no temp left
    loaded = Dictionary.load(path, expected_sequence=sequence)
    assert np.array_equal(loaded.atoms, small_dictionary.atoms)
    assert np.array_equal(loaded.lut, small_dictionary.lut)
    assert loaded.sequence.digest == sequence.digest and loaded.b1_scale is None
    with np.load(path) as z:
        assert {"atoms", "t1_ms", "t2_ms", "sequence_json", "sequence_digest",
                "format_version"} <= set(z.files)
        assert z["atoms"].dtype == np.float32


def test_save_load_roundtrip_with_b1(tmp_path, sequence):
    t1, t2, b1 = b1_grid([800.0, 1200.0], [80.0, 60.0], [0.9, 1.1])
    d = build_dictionary(sequence, t1, t2, b1=b1)
    loaded = Dictionary.load(d.save(tmp_path / "b1.npz"))
    assert np.array_equal(loaded.b1_scale, b1) and np.array_equal(loaded.atoms, d.atoms)


def test_load_with_changed_sequence_raises_stale_error_naming_both_digests(tmp_path, small_dictionary):
    path = small_dictionary.save(tmp_path / "d.npz")
    other = paper_sequence(seed=1)
    assert other.digest != small_dictionary.sequence.digest
    with pytest.raises(StaleDictionaryError) as info:
        Dictionary.load(path, expected_sequence=other)
    assert isinstance(info.value, ValueError)
    assert other.digest in str(info.value) and small_dictionary.sequence.digest in str(info.value)


def test_load_rejects_other_physics_version(tmp_path, monkeypatch, small_dictionary):
    path = small_dictionary.save(tmp_path / "d.npz")
    monkeypatch.setattr(dmod, "PHYSICS_VERSION", dmod.PHYSICS_VERSION + 1)
    with pytest.raises(StaleDictionaryError, match="physics_version"):
        Dictionary.load(path)


# -- cache -----------------------------------------------------------------------------------------
@pytest.fixture
def counting_build(monkeypatch, small_grid):
    """Small grids instead of the 80,100-atom ones, and a counter of simulations."""
    calls = []
    real_build = dmod.build_dictionary

    def build(*args, **kwargs):
        calls.append(args[0].digest)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(dmod, "build_dictionary", build)
    monkeypatch.setattr(dmod, "paper_grid", lambda: small_grid)
    monkeypatch.setattr(dmod, "shifted_test_grid", lambda: (small_grid[0] + 5, small_grid[1] + 5))
    return calls


def test_cached_dictionary_builds_once_then_loads(tmp_path, sequence, counting_build):
    first = cached_dictionary(sequence, cache_dir=tmp_path)
    second = cached_dictionary(sequence, cache_dir=tmp_path)
    assert len(counting_build) == 1
    assert np.array_equal(first.atoms, second.atoms)
    assert cache_path(sequence, cache_dir=tmp_path).exists()
    # another grid and another sequence are other cache entries
    test = cached_dictionary(sequence, grid="test", cache_dir=tmp_path)
    assert len(counting_build) == 2 and test.t1_ms[0] == first.t1_ms[0] + 5
    other = paper_sequence(seed=3)
    cached_dictionary(other, cache_dir=tmp_path)
    cached_dictionary(other, cache_dir=tmp_path)
    assert len(counting_build) == 3
    assert len(list(tmp_path.glob("*.npz"))) == 3 and not list(tmp_path.glob("*.tmp"))


def test_cache_key_includes_physics_version(tmp_path, sequence, monkeypatch):
    before = cache_path(sequence, cache_dir=tmp_path)
    monkeypatch.setattr(dmod, "PHYSICS_VERSION", dmod.PHYSICS_VERSION + 1)
    assert cache_path(sequence, cache_dir=tmp_path) != before
    assert cache_path(sequence, grid="test", cache_dir=tmp_path) != before


def test_cache_dir_defaults_to_environment_variable(tmp_path, monkeypatch, sequence, counting_build):
    monkeypatch.setenv("MRFBOOK_CACHE", str(tmp_path / "env"))
    cached_dictionary(sequence)
    assert len(list((tmp_path / "env").glob("dictionary-paper-*.npz"))) == 1
    monkeypatch.delenv("MRFBOOK_CACHE")
    assert str(cache_path(sequence)).startswith(str(dmod.Path.home() / ".cache" / "mrfbook"))


def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, sequence, counting_build):
    path = cache_path(sequence, cache_dir=tmp_path)
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="ignoring unusable"):
        d = cached_dictionary(sequence, cache_dir=tmp_path)
    assert len(counting_build) == 1 and d.n_atoms > 0
    Dictionary.load(path, expected_sequence=sequence)  # replaced by a good file


def test_cached_dictionary_rejects_unknown_grid(tmp_path, sequence):
    with pytest.raises(ValueError, match="grid"):
        cached_dictionary(sequence, grid="fine", cache_dir=tmp_path)
