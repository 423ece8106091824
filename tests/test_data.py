"""The HIGGS reader on files in HIGGS's exact format, the synthetic generator, splits, scaling."""

from __future__ import annotations

import functools
import gzip
import http.server
import threading

import numpy as np
import pytest

from axon.errors import DataError
from axon.offline import data, physics
from axon.offline.quality import roc_auc


@pytest.fixture(scope="module")
def events():
    return data.synthetic(4000, seed=3)


@pytest.fixture
def higgs_gz(tmp_path, events):
    path = tmp_path / "HIGGS.csv.gz"
    data.write_higgs_csv(path, events.features, events.labels)
    return path


def test_column_names_follow_baldi():
    assert len(data.FEATURES) == 28
    assert data.FEATURES[0] == "lepton_pT" and data.FEATURES[20] == "jet4_b-tag"
    assert data.HIGH_LEVEL == ("m_jj", "m_jjj", "m_lv", "m_jlv", "m_bb", "m_wbb", "m_wwbb")


def test_written_file_is_in_higgs_layout(higgs_gz):
    with gzip.open(higgs_gz, "rt") as fh:
        first = fh.readline().strip().split(",")
    assert len(first) == 29
    assert first[0] in ("1.000000000000000000e+00", "0.000000000000000000e+00")


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv"])
def test_reader_round_trips(tmp_path, events, suffix):
    path = tmp_path / f"HIGGS{suffix}"
    data.write_higgs_csv(path, events.features, events.labels)
    got = data.read_higgs(path)
    np.testing.assert_array_equal(got.labels, events.labels)
    np.testing.assert_allclose(got.features, events.features, rtol=1e-6)
    assert got.info.name == "higgs" and got.info.rows == 4000 and got.info.origin == str(path)


def test_reader_limits_rows_and_samples(higgs_gz, events):
    first = data.read_higgs(higgs_gz, rows=100)
    np.testing.assert_array_equal(first.labels, events.labels[:100])
    sampled = data.read_higgs(higgs_gz, rows=1000, sample=50, seed=7)
    again = data.read_higgs(higgs_gz, rows=1000, sample=50, seed=7)
    assert sampled.features.shape == (50, 28)
    np.testing.assert_array_equal(sampled.features, again.features)
    assert not np.array_equal(sampled.features, data.read_higgs(higgs_gz, rows=1000, sample=50, seed=8).features)


def test_reader_streams_a_url_and_caches_it(tmp_path, higgs_gz):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(higgs_gz.parent))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/{higgs_gz.name}"
        cache = tmp_path / "cache"
        got = data.read_higgs(url, rows=250, cache_dir=cache)
        assert got.features.shape == (250, 28) and got.info.origin == url
        assert len(list(cache.glob("*.csv.gz"))) == 1
    finally:
        httpd.shutdown()
    # Cached: it reads again with the server gone.
    assert data.read_higgs(url, rows=250, cache_dir=cache).features.shape == (250, 28)


def test_unreachable_url_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="could not download"):
        data.read_higgs("http://127.0.0.1:9/HIGGS.csv.gz", rows=10, cache_dir=tmp_path)


def _write(tmp_path, text, name="bad.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD_ROW = ",".join(["1"] + ["0.5"] * 28)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (GOOD_ROW + "\n" + ",".join(["0"] + ["0.5"] * 27) + "\n", r"bad\.csv:2: expected 29 columns"),
        (GOOD_ROW + "\n" + ",".join(["2"] + ["0.5"] * 28) + "\n", r"bad\.csv:2: label must be 0 or 1"),
        (",".join(["0"] + ["nan"] + ["0.5"] * 27) + "\n", r"bad\.csv:1: NaN"),
        (",".join(["0"] + ["abc"] + ["0.5"] * 27) + "\n", r"bad\.csv:1: not a number: 'abc'"),
        ("", "no rows"),
    ],
)
def test_bad_rows_are_clear_errors(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        data.read_higgs(_write(tmp_path, content))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        data.read_higgs(tmp_path / "nope.csv.gz")


def test_truncated_and_corrupt_gzip(tmp_path, higgs_gz):
    blob = higgs_gz.read_bytes()
    truncated = tmp_path / "truncated.csv.gz"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        data.read_higgs(truncated)
    corrupt = tmp_path / "corrupt.csv.gz"
    corrupt.write_bytes(blob[:20] + bytes(200) + blob[220:])
    with pytest.raises(DataError, match="corrupt or truncated"):
        data.read_higgs(corrupt)


def test_synthetic_is_seeded_and_balanced():
    a, b, c = data.synthetic(2000, seed=5), data.synthetic(2000, seed=5), data.synthetic(2000, seed=6)
    np.testing.assert_array_equal(a.features, b.features)
    assert not np.array_equal(a.features, c.features)
    assert a.features.dtype == np.float32 and a.features.shape == (2000, 28)
    assert np.isfinite(a.features).all()
    assert 0.45 < a.labels.mean() < 0.55
    assert a.info.name == "synthetic" and a.info.seed == 5


def test_synthetic_physics_structure():
    """Resonances sit where the physics puts them: the features are computed, not painted."""
    ev = data.synthetic(20_000, seed=11)
    col = {name: ev.features[:, i] * physics.UNIT_GEV for i, name in enumerate(data.FEATURES)}
    sig, bkg = ev.labels == 1, ev.labels == 0
    # m_lv is solved with the W-mass constraint, so it peaks at m_W for both classes.
    assert abs(np.median(col["m_lv"]) - physics.M_W) < 3
    # Background's hadronic top: m_jjj near 173 GeV; signal's bb pair near the 125 GeV Higgs.
    assert abs(np.median(col["m_jjj"][bkg]) - physics.M_TOP) < 25
    bb_sig = col["m_bb"][sig]
    assert np.mean(np.abs(bb_sig - physics.M_H) < 25) > np.mean(np.abs(col["m_bb"][bkg] - physics.M_H) < 25) + 0.1
    # The full system mass differs but overlaps: each feature alone is a weak discriminant.
    assert 0.5 < max(roc_auc(ev.labels, col["m_wwbb"]), 1 - roc_auc(ev.labels, col["m_wwbb"])) < 0.8
    # b-tags take HIGGS-like discrete values.
    assert set(np.unique(col["jet1_b-tag"] / physics.UNIT_GEV)) <= {0.0, 1.0, 2.0}


def test_split_is_stratified_and_disjoint():
    ev = data.synthetic(3000, seed=2)
    s = data.split(ev, seed=4)
    sizes = [len(p.labels) for p in (s.train, s.val, s.test)]
    assert sum(sizes) == 3000 and abs(sizes[0] - 2100) <= 2
    for part in (s.train, s.val, s.test):
        assert abs(part.labels.mean() - ev.labels.mean()) < 0.01
    rows = {r.tobytes() for r in s.train.features}
    assert not any(r.tobytes() in rows for r in s.test.features)


def test_scaler_uses_training_rows_only():
    ev = data.synthetic(3000, seed=2)
    s = data.split(ev, seed=4)
    scaler = data.Scaler.fit(s.train.features)
    np.testing.assert_allclose(scaler.mean, s.train.features.mean(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-6)
    z = scaler.transform(s.train.features)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-3)
