"""`axon train` end to end, and its bad-input errors, through the real command line."""

from __future__ import annotations

import json

import numpy as np

from axon.offline import data
from tests.helpers import assert_clean_error, run_axon


def test_train_from_a_higgs_file(tmp_path):
    events = data.synthetic(1500, seed=4)
    csv = tmp_path / "HIGGS.csv.gz"
    data.write_higgs_csv(csv, events.features, events.labels)
    out = tmp_path / "out"
    done = run_axon(
        "train",
        "--dataset",
        str(csv),
        "--rows",
        "1200",
        "--epochs",
        "1",
        "--models",
        "v1",
        "--out",
        str(out),
        "--gpu-repository",
        str(tmp_path / "gpu"),
    )
    assert done.returncode == 0, done.stderr
    assert "particle_classifier_v1" in done.stdout and "val AUC" in done.stdout
    assert "dataset: higgs (1200 rows" in done.stdout
    metrics = json.loads((out / "models/particle_classifier_v1/metrics.json").read_text())
    assert metrics["dataset"] == {"name": "higgs", "rows": 1200, "seed": 0, "origin": str(csv)}
    assert (tmp_path / "gpu/batching_off/particle_classifier_v1/1/model.onnx").is_file()
    assert (out / "repositories/embedded/batching_on/particle_classifier_v1/1/model.py").is_file()


def _bad_csv(tmp_path, row: str):
    path = tmp_path / f"bad{len(list(tmp_path.glob('bad*.csv')))}.csv"
    path.write_text(",".join(["1"] + ["0.5"] * 28) + "\n" + row + "\n")
    return path


def test_bad_inputs_exit_2_without_traceback(tmp_path):
    out = str(tmp_path / "out")
    cases = [
        (str(tmp_path / "missing.csv.gz"), "not found"),
        (str(_bad_csv(tmp_path, ",".join(["0"] + ["0.5"] * 10))), "expected 29 columns"),
        (str(_bad_csv(tmp_path, ",".join(["7"] + ["0.5"] * 28))), "label must be 0 or 1"),
        (str(_bad_csv(tmp_path, ",".join(["0", "nan"] + ["0.5"] * 27))), "NaN"),
    ]
    truncated = tmp_path / "truncated.csv.gz"
    events = data.synthetic(500, seed=1)
    data.write_higgs_csv(tmp_path / "full.csv.gz", events.features, events.labels)
    truncated.write_bytes((tmp_path / "full.csv.gz").read_bytes()[:3000])
    cases.append((str(truncated), "corrupt or truncated"))
    for dataset, message in cases:
        assert_clean_error(run_axon("train", "--dataset", dataset, "--out", out), "axon: error:", message)


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = run_axon("train", "--rows", "500", "--epochs", "1", "--out", str(blocker / "out"))
    assert_clean_error(done, "not writable")


def test_argument_errors(tmp_path):
    assert_clean_error(run_axon("train", "--rows", "-5"), "must be > 0")
    assert_clean_error(run_axon("train", "--models", "v9"), "unknown model")
    assert_clean_error(run_axon("frobnicate"), "invalid choice")


def test_validation_rows_are_saved_for_the_load_generator(artifacts):
    with np.load(artifacts / "validation_rows.npz") as npz:
        assert npz["features"].dtype == np.float32 and len(npz["features"]) == len(npz["labels"]) > 256
