"""HIGGS data: the UCI reader, the synthetic generator's front door, splits and scaling.

The UCI file (HIGGS.csv.gz) has no header; column 0 is the label (1.0 signal, 0.0 background),
then 21 low-level and 7 high-level features. Every dataset carries a :class:`DataInfo` so each
artefact downstream can say which data it came from.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import numpy as np

from axon.errors import DataError
from axon.offline import physics

HIGGS_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/00280/HIGGS.csv.gz"
DEFAULT_CACHE = Path(os.environ.get("AXON_CACHE", Path.home() / ".cache" / "axon"))

# Column names after Baldi, Sadowski & Whiteson (2014).
LOW_LEVEL = (
    "lepton_pT", "lepton_eta", "lepton_phi", "missing_energy_magnitude", "missing_energy_phi",
    "jet1_pt", "jet1_eta", "jet1_phi", "jet1_b-tag",
    "jet2_pt", "jet2_eta", "jet2_phi", "jet2_b-tag",
    "jet3_pt", "jet3_eta", "jet3_phi", "jet3_b-tag",
    "jet4_pt", "jet4_eta", "jet4_phi", "jet4_b-tag",
)  # fmt: skip
HIGH_LEVEL = ("m_jj", "m_jjj", "m_lv", "m_jlv", "m_bb", "m_wbb", "m_wwbb")
FEATURES = LOW_LEVEL + HIGH_LEVEL
N_FEATURES = len(FEATURES)  # 28
N_COLUMNS = N_FEATURES + 1  # label first

PARSE_CHUNK_ROWS = 50_000
# train, validation, test
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class DataInfo:
    """Where a dataset came from: recorded in every metrics file and result."""

    name: str  # "higgs" or "synthetic"
    rows: int
    seed: int
    origin: str  # the path, URL or generator that produced it

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray  # (n, 28) float32
    labels: np.ndarray  # (n,) float32, 0 or 1
    info: DataInfo


@dataclass(frozen=True)
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset


@dataclass(frozen=True)
class Scaler:
    """Standardisation fitted on the training split only, later folded into the ONNX graph."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> Scaler:
        std = features.std(axis=0, dtype=np.float64)
        # A constant column would divide by zero; leave it unscaled.
        std = np.where(std > 1e-12, std, 1.0)
        return cls(features.mean(axis=0, dtype=np.float64).astype(np.float32), std.astype(np.float32))

    def transform(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)


def synthetic(rows: int, seed: int = 0) -> Dataset:
    """HIGGS-like events generated from four-vector kinematics (see :mod:`axon.offline.physics`)."""
    if rows <= 0:
        raise DataError(f"rows must be positive, got {rows}")
    features, labels = physics.generate(rows, seed)
    return Dataset(features, labels, DataInfo("synthetic", rows, seed, "axon.offline.physics"))


def read_higgs(
    source: str | os.PathLike,
    rows: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    cache_dir: Path = DEFAULT_CACHE,
    progress: bool = False,
) -> Dataset:
    """Read HIGGS rows from a local CSV(.gz) or a URL.

    Parameters
    ----------
    source
        A path, or an ``http(s)://`` URL that is streamed (and cached) until ``rows`` rows.
    rows
        Read at most this many rows from the start of the file; ``None`` reads all.
    sample
        Keep a seeded random sample of this many of the rows read.
    """
    text = str(source)
    if text.startswith(("http://", "https://")):
        path = _cached_download(text, rows, cache_dir, progress)
    else:
        path = Path(text)
        if not path.is_file():
            raise DataError(f"HIGGS file not found: {path}")
    features, labels = _parse(path, rows)
    if sample is not None:
        if sample <= 0 or sample > len(labels):
            raise DataError(f"sample must be between 1 and {len(labels)} rows, got {sample}")
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), sample, replace=False))
        features, labels = features[keep], labels[keep]
    return Dataset(features, labels, DataInfo("higgs", len(labels), seed, text))


def _open_text(path: Path) -> IO[str]:
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    # The caller's `with` closes the wrapper, which closes the raw file.
    raw = gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="ascii", newline="")


def _lines(path: Path, rows: int | None) -> Iterator[tuple[int, str]]:
    """Yield (line number, line) and turn decompression failures into DataError."""
    try:
        with _open_text(path) as fh:
            for number, line in enumerate(fh, start=1):
                if rows is not None and number > rows:
                    return
                yield number, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip file ({exc})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None


def _parse(path: Path, rows: int | None) -> tuple[np.ndarray, np.ndarray]:
    chunks: list[np.ndarray] = []
    batch: list[list[str]] = []
    first_line = 1
    for number, line in _lines(path, rows):
        fields = line.rstrip("\r\n").split(",")
        if len(fields) != N_COLUMNS:
            raise DataError(f"{path}:{number}: expected {N_COLUMNS} columns (label + {N_FEATURES} features), got {len(fields)}")
        batch.append(fields)
        if len(batch) == PARSE_CHUNK_ROWS:
            chunks.append(_to_array(path, batch, first_line))
            first_line += len(batch)
            batch = []
    if batch:
        chunks.append(_to_array(path, batch, first_line))
    if not chunks:
        raise DataError(f"{path}: no rows")
    table = np.concatenate(chunks)
    labels = table[:, 0]
    bad = np.flatnonzero((labels != 0.0) & (labels != 1.0))
    if len(bad):
        raise DataError(f"{path}:{bad[0] + 1}: label must be 0 or 1, got {labels[bad[0]]!r}")
    features = table[:, 1:]
    bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if len(bad_rows):
        raise DataError(f"{path}:{bad_rows[0] + 1}: NaN or infinite feature value")
    return features.astype(np.float32), labels.astype(np.float32)


def _to_array(path: Path, batch: list[list[str]], first_line: int) -> np.ndarray:
    try:
        return np.array(batch, dtype=np.float64)
    except ValueError:
        for offset, fields in enumerate(batch):
            for value in fields:
                try:
                    float(value)
                except ValueError:
                    raise DataError(f"{path}:{first_line + offset}: not a number: {value!r}") from None
        raise


def _cached_download(url: str, rows: int | None, cache_dir: Path, progress: bool) -> Path:
    """Stream a gzipped CSV from ``url``, keeping only the first ``rows`` rows, into a cache file."""
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    target = cache_dir / f"higgs-{key}-{rows if rows is not None else 'all'}.csv.gz"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            source = gzip.GzipFile(fileobj=_Counting(response, total, progress, url))
            with gzip.open(partial, "wb") as out:
                for number, line in enumerate(source, start=1):
                    if rows is not None and number > rows:
                        break
                    out.write(line)
    except OSError as exc:  # URLError, timeouts and HTTP errors are all OSError
        partial.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: {exc}") from None
    os.replace(partial, target)
    return target


class _Counting(io.RawIOBase):
    """A readable wrapper that drives a progress bar by compressed bytes received."""

    def __init__(self, raw, total: int | None, progress: bool, label: str):
        self._raw = raw
        self._bar = None
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"download {label.rsplit('/', 1)[-1]}")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        if self._bar is not None:
            self._bar.update(len(data))
        return len(data)


def write_higgs_csv(path: Path, features: np.ndarray, labels: np.ndarray) -> None:
    """Write rows in HIGGS's exact format (no header, label first, ``%.18e``); gzip if ``.gz``."""
    table = np.column_stack([labels.astype(np.float64), features.astype(np.float64)])
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt") as fh:
        np.savetxt(fh, table, fmt="%.18e", delimiter=",")


def load(spec: str, rows: int, seed: int = 0, cache_dir: Path = DEFAULT_CACHE, progress: bool = False) -> Dataset:
    """Resolve a dataset spec: ``synthetic``, ``higgs`` (the UCI URL), a path or a URL."""
    if rows <= 0:
        raise DataError(f"rows must be positive, got {rows}")
    if spec == "synthetic":
        return synthetic(rows, seed)
    source = HIGGS_URL if spec == "higgs" else spec
    return read_higgs(source, rows=rows, seed=seed, cache_dir=cache_dir, progress=progress)


def split(data: Dataset, fractions: tuple[float, float, float] = SPLIT_FRACTIONS, seed: int = 0) -> Splits:
    """Stratified, seeded train/validation/test split; each part holds both classes."""
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for label, kind in ((0.0, "background"), (1.0, "signal")):
        idx = np.flatnonzero(data.labels == label)
        rng.shuffle(idx)
        cut1 = int(round(len(idx) * fractions[0]))
        cut2 = cut1 + int(round(len(idx) * fractions[1]))
        chunks = (idx[:cut1], idx[cut1:cut2], idx[cut2:])
        # AUC and accuracy on a split without one class are undefined: say so before training.
        if any(len(chunk) == 0 for chunk in chunks):
            raise DataError(
                f"dataset of {len(data.labels)} rows has {len(idx)} {kind} rows: too few for the train, validation "
                "and test splits to each hold both classes"
            )
        for part, chunk in zip(parts, chunks):
            part.append(chunk)
    out = []
    for chunks in parts:
        idx = np.sort(np.concatenate(chunks))
        out.append(Dataset(data.features[idx], data.labels[idx], data.info))
    return Splits(*out)
