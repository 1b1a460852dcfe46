"""The series input contract (edgecnn/series.py): manifest block, the one preprocessing, the audio front end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecnn.bundle import validate_input
from edgecnn.errors import EdgeCNNError
from edgecnn.preprocess import model_input_shape, preprocess
from edgecnn.series import (
    FRONTEND_DEFAULTS,
    dct_matrix,
    features,
    fit_normalization,
    mel_filterbank,
    preprocess_series,
    series_spec,
)


def test_series_block_validates_and_round_trips_json():
    spec = series_spec(6, 100, np.zeros(6), np.ones(6), sample_rate=10)
    again = validate_input(json.loads(json.dumps(spec)), "manifest.json")
    assert again["kind"] == "series" and model_input_shape(again) == (6, 1, 100)
    for bad, word in [(dict(spec, layout="NCHW"), "layout"), (dict(spec, std=[1.0] * 5), "std"),
                      (dict(spec, channels=0), "channels"), (dict(spec, kind="audio"), "kind"),
                      (dict(spec, std=[0.0] * 6), "std"), (dict(spec, sample_rate=-1), "sample_rate")]:
        with pytest.raises(EdgeCNNError, match=word):
            validate_input(bad, "manifest.json")


def test_preprocess_series_standardizes_pads_and_fills_missing():
    mean, std = np.array([1.0, -2.0]), np.array([2.0, 0.5])
    spec = series_spec(2, 5, mean, std)
    w = np.array([[3.0, -2.0], [1.0, np.nan], [5.0, -1.0]])  # 3 samples: padded to 5, one missing
    x = preprocess_series(w, spec)
    assert x.shape == (2, 1, 5) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, :], [[1, 0, 2, 0, 0], [0, 0, 2, 0, 0]])
    long = np.arange(16, dtype=float).reshape(8, 2)
    np.testing.assert_allclose(preprocess_series(long, spec)[0, 0], (long[:5, 0] - 1) / 2)
    assert preprocess_series(np.ones(5), series_spec(1, 5, [0], [1])).shape == (1, 1, 5)
    with pytest.raises(EdgeCNNError, match=r"shaped \(samples, 2\)"):
        preprocess_series(np.zeros((5, 3)), spec)
    with pytest.raises(EdgeCNNError, match="infinite"):
        preprocess_series(np.full((5, 2), np.inf), spec)


def test_image_preprocess_on_a_series_block_is_one_clear_line():
    spec = series_spec(6, 100, np.zeros(6), np.ones(6))
    with pytest.raises(EdgeCNNError, match="series windows.*predict_series"):
        preprocess(np.zeros((32, 32, 3), np.uint8), spec)
    with pytest.raises(EdgeCNNError, match="not a series"):
        preprocess_series(np.zeros((100, 6)), {"height": 8, "width": 8, "channels": 1})


def test_fit_normalization_ignores_missing_values_and_padding():
    spec = series_spec(2, 4, [0, 0], [1, 1])
    wins = [np.array([[1.0, 10.0], [3.0, np.nan]]), np.array([[5.0, 30.0], [7.0, 50.0], [9.0, 70.0]])]
    mean, std = fit_normalization(wins, spec)
    np.testing.assert_allclose(mean, [5.0, 40.0])
    np.testing.assert_allclose(std, [np.std([1, 3, 5, 7, 9]), np.std([10, 30, 50, 70])])


def test_frontend_steps_match_scipy_and_a_pure_tone_lands_in_its_mel_band():
    import scipy.fft
    import scipy.signal

    m = np.random.default_rng(0).standard_normal((7, 40))
    np.testing.assert_allclose(m @ dct_matrix(40, 10), scipy.fft.dct(m, type=2, norm="ortho", axis=1)[:, :10],
                               atol=1e-12)
    np.testing.assert_allclose(np.hanning(9)[:-1], np.r_[scipy.signal.get_window("hann", 8)], atol=1e-12)
    sr = 16000
    fe = dict(FRONTEND_DEFAULTS, type="logmel")
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)
    f = features(tone, fe, sr)
    assert f.shape == (40, 49)
    fb = mel_filterbank(sr, fe["n_fft"], fe["n_mels"], fe["fmin"], fe["fmax"])
    assert int(np.argmax(f[:, 10])) == int(np.argmax(fb[round(1000 * fe["n_fft"] / sr)]))
    spec = series_spec(1, sr, np.zeros(10), np.ones(10), sample_rate=sr, frontend=FRONTEND_DEFAULTS)
    assert model_input_shape(spec) == (10, 1, 49) and preprocess_series(tone, spec).shape == (10, 1, 49)
    with pytest.raises(EdgeCNNError, match="fmax"):
        series_spec(1, sr, np.zeros(10), np.ones(10), sample_rate=sr, frontend=dict(FRONTEND_DEFAULTS, fmax=9000.0))


def test_frontend_equals_librosa_on_a_real_recording():
    """The numpy front end against librosa (HTK mel, no filter normalization, power spectrogram) on a real
    signal: BasicMotions' accelerometer x-axis, the 40 training cases strung together and read as audio."""
    librosa = pytest.importorskip("librosa")
    aeon_datasets = pytest.importorskip("aeon.datasets")
    from pathlib import Path

    from edgecnn.data import load_dataset

    ds = load_dataset(f"ts:{Path(aeon_datasets.__file__).parent / 'data' / 'BasicMotions'}")
    y = np.concatenate([x[:, 0] for x in ds.split("train")[0]] * 4)  # 16,000 samples
    y = y / np.abs(y).max()
    sr, fe = 16000, dict(FRONTEND_DEFAULTS, type="logmel")
    win, hop, n_fft = 640, 320, fe["n_fft"]
    ref = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, win_length=win, window="hann",
                                         center=False, power=2.0, n_mels=fe["n_mels"], fmin=fe["fmin"],
                                         fmax=fe["fmax"], htk=True, norm=None)
    np.testing.assert_allclose(mel_filterbank(sr, n_fft, 40, 20.0, 4000.0).T,
                               librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=40, fmin=20.0, fmax=4000.0, htk=True,
                                                   norm=None), rtol=1e-6, atol=1e-9)
    # librosa centres the win-sample window inside its n_fft frame: the same samples start (n_fft - win) / 2 later
    ours = features(y[(n_fft - win) // 2:], fe, sr)[:, : ref.shape[1]]
    np.testing.assert_allclose(ours, np.log(ref + fe["log_offset"]), rtol=1e-6, atol=1e-6)
    mfcc = features(y[(n_fft - win) // 2:], dict(fe, type="mfcc"), sr)[:, : ref.shape[1]]
    ref_mfcc = librosa.feature.mfcc(S=np.log(ref + fe["log_offset"]), n_mfcc=10, dct_type=2, norm="ortho")
    np.testing.assert_allclose(mfcc, ref_mfcc, rtol=1e-6, atol=1e-6)
