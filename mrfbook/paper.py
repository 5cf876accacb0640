"""The figures Song et al. report (ICASSP 2019), as published, for side-by-side comparison.

These are the *paper's* numbers, typed in from its text (section 4 and the captions of Figs. 3
and 5); every number the book puts next to them comes from the book's own run. Each entry names
where in the paper it comes from.

Explained in chapter 9, book/09_reproduction.md.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["PAPER", "paper_value"]


def _frozen(d: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType({k: _frozen(v) if isinstance(v, dict) else v for k, v in d.items()})


#: The paper's figures. Units: ms for RMSE, dB for SNR, s for times, MB for storage.
PAPER: Mapping[str, Any] = _frozen({
    "synthetic": {  # Fig. 3 caption
        "t1_rmse_ms": 0.659, "t2_rmse_ms": 0.491,
        "t1_r2": 0.99999986, "t2_r2": 0.99999963,
        "source": "Fig. 3 caption",
    },
    "full_sampling": {  # section 4.2, Fig. 4
        "t2_rmse_network_ms": 2.498, "t2_rmse_matching_ms": 6.252, "t2_snr_gain_db": 7.9,
        "source": "section 4.2 (Fig. 4)",
    },
    "undersampled": {  # Fig. 5, sampling ratio 0.15, SNR T1 / T2 in dB and time cost in s
        "sampling_ratio": 0.15,
        "ma_matching": {"t1_snr_db": 13.50, "t2_snr_db": 8.61, "seconds": 106.0},
        "flor": {"t1_snr_db": 30.51, "t2_snr_db": 21.89, "seconds": 121.7},
        "proposed": {"t1_snr_db": 30.76, "t2_snr_db": 19.78, "seconds": 1.67},
        "source": "Fig. 5",
    },
    "speed": {  # section 4.2
        "network_80k_s": 8.2, "matching_80k_s": 464.1, "speedup_80k": 53.0,
        "network_slice_s": 1.6, "speedup_slice": 56.0, "speedup_vs_flor": 73.0,
        "source": "section 4.2",
    },
    "storage": {"network_mb": 20.3, "dictionary_mb_more_than": 100.0, "source": "section 4.2"},
    "training": {"seconds_per_epoch": 30.0, "epochs": 50, "device": "NVIDIA GeForce GTX 1080 Ti",
                 "source": "section 4.1"},
})


def paper_value(*keys: str) -> Any:
    """The paper's figure at ``PAPER[keys[0]][keys[1]]...`` (KeyError names the missing key).

    Examples
    --------
    >>> paper_value("synthetic", "t1_rmse_ms")
    0.659
    """
    node: Any = PAPER
    for i, k in enumerate(keys):
        if not isinstance(node, Mapping) or k not in node:
            raise KeyError(f"the paper's figures have no entry {'/'.join(keys[: i + 1])!r}")
        node = node[k]
    return node
