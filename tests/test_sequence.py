"""Tests for mrfbook.physics.sequence (validation, digest, factories)."""

import json

import numpy as np
import pytest

from mrfbook.physics.sequence import (
    FispSequence,
    constant_sequence,
    paper_sequence,
    perlin_tr,
    random_sequence,
    single_sinusoid,
    sinusoidal_lobes,
)


def _ok(**over):
    kw = dict(flip_angles_deg=[10.0, 20.0, 30.0], tr_ms=[12.0, 13.0, 14.0], te_ms=2.0)
    kw.update(over)
    return FispSequence.from_arrays(**kw)


def test_paper_sequence_matches_paper_description():
    s = paper_sequence()
    assert s.n_timepoints == 200
    assert np.all(s.te_ms == 2.0)
    assert s.tr_ms.min() == pytest.approx(11.5) and s.tr_ms.max() == pytest.approx(14.5)
    assert s.flip_angles_deg.min() == 0.0 and s.flip_angles_deg.max() == pytest.approx(70.0)
    assert np.all(s.rf_phase_deg == 90.0)
    assert s.inversion is True
    # smooth: TR steps small compared with the range; FA steps small compared with 70 deg
    assert np.abs(np.diff(s.tr_ms)).max() < 0.5
    assert np.abs(np.diff(s.flip_angles_deg)).max() < 10.0
    # seeded: same seed same TRs, other seed other TRs
    assert paper_sequence(seed=0) == s
    assert not np.allclose(paper_sequence(seed=1).tr_ms, s.tr_ms)


def test_lobes_count_and_heights():
    fa = sinusoidal_lobes(200, 70.0, 4)
    on = fa > 0
    starts = np.flatnonzero(on[1:] & ~on[:-1]) + 1
    assert on[0] and len(starts) == 3  # 4 lobes, separated by 3 gaps (+ trailing gap)
    heights = [fa[a:b].max() for a, b in zip([0, *starts], [*starts, 200])]
    assert len(set(np.round(heights, 6))) == 4
    assert max(heights) == pytest.approx(70.0)


def test_arrays_read_only_and_copied():
    fa = np.array([10.0, 20.0])
    s = FispSequence.from_arrays(fa, 12.0, 2.0)
    fa[0] = 99.0
    assert s.flip_angles_deg[0] == 10.0
    with pytest.raises(ValueError):
        s.flip_angles_deg[0] = 5.0
    with pytest.raises(AttributeError):
        s.inversion = False  # frozen


@pytest.mark.parametrize(
    "over, name",
    [
        (dict(flip_angles_deg=[10.0, -1.0, 30.0]), "flip_angles_deg"),
        (dict(flip_angles_deg=[10.0, 181.0, 30.0]), "flip_angles_deg"),
        (dict(flip_angles_deg=[10.0, np.nan, 30.0]), "flip_angles_deg"),
        (dict(tr_ms=[12.0, -13.0, 14.0]), "tr_ms"),
        (dict(tr_ms=[12.0, np.nan, 14.0]), "tr_ms"),
        (dict(tr_ms=0.0), "tr_ms"),
        (dict(te_ms=-2.0), "te_ms"),
        (dict(te_ms=np.nan), "te_ms"),
        (dict(te_ms=13.0), "te_ms"),  # TE >= TR at index 0
        (dict(te_ms=[2.0, 13.0, 2.0]), "te_ms"),  # TE == TR
        (dict(tr_ms=[12.0, 13.0]), "tr_ms"),  # length mismatch
        (dict(rf_phase_deg=np.inf), "rf_phase_deg"),
        (dict(inversion_delay_ms=-1.0), "inversion_delay_ms"),
        (dict(inversion_delay_ms=np.nan), "inversion_delay_ms"),
        (dict(inversion="yes"), "inversion"),
        (dict(flip_angles_deg=[[10.0, 20.0]]), "flip_angles_deg"),
    ],
)
def test_bad_input_names_parameter(over, name):
    with pytest.raises(ValueError, match=name):
        _ok(**over)


def test_constructor_does_not_broadcast_scalars():
    with pytest.raises(ValueError, match="tr_ms"):
        FispSequence(np.array([10.0, 20.0]), 12.0, np.array([2.0, 2.0]), np.array([90.0, 90.0]))
    with pytest.raises(ValueError, match="te_ms has length"):
        FispSequence(np.array([10.0, 20.0]), np.array([12.0, 12.0]), np.array([2.0]), np.array([90.0, 90.0]))
    with pytest.raises(ValueError, match="flip_angles_deg"):
        FispSequence(np.array([]), np.array([]), np.array([]), np.array([]))


def test_factory_bad_input():
    with pytest.raises(ValueError, match="max_flip_deg"):
        paper_sequence(max_flip_deg=200.0)
    with pytest.raises(ValueError, match="n_lobes"):
        paper_sequence(n_lobes=0)
    with pytest.raises(ValueError, match="n_timepoints"):
        paper_sequence(n_timepoints=0)
    with pytest.raises(ValueError, match="tr_range_ms"):
        perlin_tr(10, (14.0, 12.0))
    with pytest.raises(ValueError, match="te_ms"):
        paper_sequence(te_ms=12.0)  # TE >= min TR


def test_digest_changes_with_every_parameter():
    base = _ok()
    variants = [
        _ok(flip_angles_deg=[10.0, 20.0, 30.000001]),
        _ok(tr_ms=[12.0, 13.0, 14.000001]),
        _ok(te_ms=2.000001),
        _ok(rf_phase_deg=0.0),
        _ok(inversion=False),
        _ok(inversion_delay_ms=1.0),
        _ok(flip_angles_deg=[10.0, 20.0], tr_ms=[12.0, 13.0]),
    ]
    digests = {base.digest, *(v.digest for v in variants)}
    assert len(digests) == len(variants) + 1
    assert _ok().digest == base.digest  # deterministic
    assert len(base.digest) == 64


def test_matches_accepts_round_off_only():
    s = paper_sequence(seed=3)
    d = s.to_dict()
    ulp = dict(d, tr_ms=np.nextafter(s.tr_ms, np.inf).tolist())  # another machine's last bit
    moved = FispSequence.from_dict(ulp)
    assert moved.digest != s.digest and s.matches(moved) and s.matches(ulp) and moved.matches(s)
    assert not s.matches(dict(d, tr_ms=(s.tr_ms * (1 + 1e-9)).tolist()))
    assert not s.matches(dict(d, te_ms=(s.te_ms * 1.01).tolist()))
    assert not s.matches(dict(d, inversion=not s.inversion))
    assert not s.matches(dict(d, inversion_delay_ms=d["inversion_delay_ms"] + 1.0))
    assert not s.matches(dict(d, tr_ms=s.tr_ms[:-1].tolist()))
    assert not s.matches(None) and not s.matches({"tr_ms": [1.0]})
    assert s.matches(moved, rtol=0.0) is False


def test_dict_round_trip_is_exact_and_json_able():
    s = paper_sequence(seed=3)
    d = json.loads(json.dumps(s.to_dict()))
    s2 = FispSequence.from_dict(d)
    assert s2 == s and s2.digest == s.digest
    assert np.array_equal(s2.tr_ms, s.tr_ms)
    with pytest.raises(ValueError, match="missing"):
        FispSequence.from_dict({"tr_ms": [1.0]})


def test_other_factories():
    c = constant_sequence(50, 30.0, 10.0, 2.0)
    assert c.n_timepoints == 50 and np.all(c.flip_angles_deg == 30.0) and not c.inversion
    s = single_sinusoid(100, max_flip_deg=60.0)
    assert s.flip_angles_deg.max() == pytest.approx(60.0) and np.all(s.flip_angles_deg > 0)
    assert np.argmax(s.flip_angles_deg) in (49, 50)
    r1, r2 = random_sequence(seed=1), random_sequence(seed=1)
    assert r1 == r2 and r1 != random_sequence(seed=2)
    assert r1.flip_angles_deg.max() <= 70.0 and 11.5 <= r1.tr_ms.min() <= r1.tr_ms.max() <= 14.5
    flat = perlin_tr(20, (12.0, 12.0))
    assert np.all(flat == 12.0)


def test_make_sequence_shapes():
    from mrfbook.physics.sequence import SHAPES, make_sequence

    for shape in SHAPES:
        s = make_sequence(shape, 120, max_flip_deg=50.0, n_lobes=3, tr_range_ms=(10.0, 12.0))
        assert s.n_timepoints == 120 and s.flip_angles_deg.max() == pytest.approx(50.0, abs=1.0)
        assert 10.0 <= s.tr_ms.min() and s.tr_ms.max() <= 12.0
    assert make_sequence("lobes") == paper_sequence()
    assert np.all(make_sequence("constant", max_flip_deg=20.0).flip_angles_deg == 20.0)
    with pytest.raises(ValueError, match="shape"):
        make_sequence("triangle")


def test_pickle_round_trip_keeps_read_only():
    import copy
    import pickle

    s = paper_sequence()
    for s2 in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s)):
        assert s2 == s and s2.digest == s.digest
        assert not s2.tr_ms.flags.writeable
