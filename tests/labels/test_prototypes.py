"""Prototypes follow the documented rule; leave-one-out fits a temperature that tracks how separable a bank is."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reelserve.labels.prototypes import (
    DEFAULT_TEMPERATURE,
    MIN_CALIBRATION_EXAMPLES,
    PROMPT_WEIGHT_IN_EXAMPLES,
    TEMPERATURE_RANGE,
    LabelEmbeddings,
    build_bank,
    expected_calibration_error,
    fit_temperature,
    prototype,
    scores,
)

E = 32


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _basis(*indices: int, dim: int = 4) -> np.ndarray:
    return np.eye(dim, dtype=np.float32)[list(indices)]


def _none(dim: int = 4) -> np.ndarray:
    return np.zeros((0, dim), dtype=np.float32)


def _clusters(noise: float, labels: int = 5, shots: int = 6, seed: int = 0) -> list[LabelEmbeddings]:
    """Few-shot labels: examples scattered around random centres on the unit sphere (no prompts)."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(labels, E)))
    out = []
    for i, c in enumerate(centres):
        xs = _unit(c + noise * rng.normal(size=(shots, E)) / math.sqrt(E))
        out.append(LabelEmbeddings(f"l{i}", _none(E), xs.astype(np.float32)))
    return out


# -- the rule ---------------------------------------------------------------------------------


def test_prompts_only_is_their_normalised_mean() -> None:
    np.testing.assert_allclose(prototype(_basis(0, 1), _none()), _unit([1, 1, 0, 0]), atol=1e-6)


def test_examples_only_is_their_normalised_mean() -> None:
    np.testing.assert_allclose(prototype(_none(), _basis(2, 3, 3)), _unit([0, 0, 1, 2]), atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 10])
def test_both_mix_with_weight_n_over_n_plus_k(n: int) -> None:
    examples = np.repeat(_basis(2), n, axis=0)
    w = n / (n + PROMPT_WEIGHT_IN_EXAMPLES)
    expected = _unit(w * np.array([0, 0, 1, 0]) + (1 - w) * _unit([1, 1, 0, 0]))
    got = prototype(_basis(0, 1), examples)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_one_example_barely_moves_a_prompted_label_many_dominate() -> None:
    prompt, example = _basis(0), _basis(1)
    assert prototype(prompt, example) @ prompt[0] > prototype(prompt, example) @ example[0]  # w = 1/3
    assert prototype(prompt, np.repeat(example, 10, axis=0)) @ example[0] > 0.95


def test_a_few_shot_only_label_wins_near_its_examples() -> None:
    rng = np.random.default_rng(3)
    latte = _unit(rng.normal(size=E))
    cat_prompts = _unit(rng.normal(size=(3, E)))
    latte_examples = _unit(latte + 0.2 * rng.normal(size=(3, E)) / math.sqrt(E))
    bank = build_bank(
        [
            LabelEmbeddings("cat", cat_prompts.astype(np.float32), _none(E)),
            LabelEmbeddings("latte-art", _none(E), latte_examples.astype(np.float32)),
        ]
    )
    held_out = _unit(latte + 0.2 * rng.normal(size=E) / math.sqrt(E))[None, :]
    _, probs, _, _ = scores(held_out, bank.prototypes, bank.temperature)
    assert bank.names[int(probs.argmax())] == "latte-art"
    assert bank.counts == {"cat": {"prompts": 3, "examples": 0}, "latte-art": {"prompts": 0, "examples": 3}}


# -- scores -----------------------------------------------------------------------------------


def test_scores_properties() -> None:
    rng = np.random.default_rng(1)
    protos = _unit(rng.normal(size=(6, E)))
    x = _unit(rng.normal(size=(50, E)))
    cos, probs, entropy, margin = scores(x, protos, 0.05)
    assert cos.shape == probs.shape == (50, 6) and entropy.shape == margin.shape == (50,)
    assert {a.dtype for a in (cos, probs, entropy, margin)} == {np.dtype(np.float32)}
    np.testing.assert_allclose(cos, x @ protos.T, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (entropy >= 0).all() and (entropy <= 1).all()
    assert (margin >= 0).all() and (margin <= 1).all()
    top2 = np.sort(probs, axis=1)[:, -2:]
    np.testing.assert_allclose(margin, top2[:, 1] - top2[:, 0], atol=1e-6)


def test_an_equidistant_vector_has_entropy_one_and_no_margin() -> None:
    protos = np.eye(5)
    _, probs, entropy, margin = scores(_unit(np.ones(5))[None, :], protos, 0.01)
    np.testing.assert_allclose(probs, 0.2, atol=1e-6)
    assert entropy[0] == pytest.approx(1.0, abs=1e-6) and margin[0] == pytest.approx(0.0, abs=1e-6)


def test_a_sharp_temperature_is_numerically_stable() -> None:
    _, probs, entropy, margin = scores(_basis(0), np.eye(4), 1e-4)  # logits of 1e4: exp would overflow unshifted
    assert np.isfinite(probs).all() and probs[0, 0] == pytest.approx(1.0)
    assert entropy[0] == pytest.approx(0.0, abs=1e-6) and margin[0] == pytest.approx(1.0)


def test_one_label_has_zero_entropy_and_margin_top1() -> None:
    _, probs, entropy, margin = scores(_basis(0, 1), _basis(0), 0.05)
    np.testing.assert_allclose(probs, 1.0)
    np.testing.assert_allclose(entropy, 0.0)
    np.testing.assert_allclose(margin, 1.0)


@pytest.mark.parametrize(
    ("embeddings", "prototypes", "temperature", "message"),
    [
        (np.ones((2, 4)), np.ones((3, 5)), 0.05, r"embeddings \[2, 4\] and prototypes \[3, 5\]"),
        (np.ones(4), np.ones((3, 4)), 0.05, r"expected \[B, E\] and \[C, E\]"),
        (np.ones((2, 4)), np.ones((0, 4)), 0.05, r"prototypes \[0, 4\]"),
        (np.full((2, 4), np.nan), np.ones((3, 4)), 0.05, r"non-finite"),
        (np.ones((2, 4)), np.ones((3, 4)), 0.0, r"temperature must be a positive finite number"),
        (np.ones((2, 4)), np.ones((3, 4)), math.inf, r"temperature must be a positive finite number"),
    ],
)
def test_scores_refuse_bad_input(embeddings, prototypes, temperature, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scores(embeddings, prototypes, temperature)


# -- temperature and leave-one-out ------------------------------------------------------------


def test_a_well_separated_bank_is_perfect_and_sharper_than_a_noisy_one() -> None:
    clean = build_bank(_clusters(noise=0.3))
    noisy = build_bank(_clusters(noise=2.5))
    assert clean.calibrated and noisy.calibrated
    assert clean.loo_items == noisy.loo_items == 30
    assert clean.loo_accuracy == 1.0
    assert noisy.loo_accuracy < 1.0
    assert TEMPERATURE_RANGE[0] <= clean.temperature < noisy.temperature <= TEMPERATURE_RANGE[1]
    assert 0 <= clean.ece <= 1 and 0 <= noisy.ece <= 1 and clean.nll < noisy.nll
    assert clean.prototypes.shape == (5, E) and clean.prototypes.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(clean.prototypes, axis=1), 1.0, atol=1e-6)


def test_the_fitted_temperature_minimises_the_nll() -> None:
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(200, 4)) * 0.1
    targets = rng.integers(0, 4, size=200)
    rows[np.arange(200), targets] += 0.1  # signal, but overlapping
    t = fit_temperature(rows, targets)

    def nll(temp: float) -> float:
        z = rows / temp
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(200), targets]))

    assert TEMPERATURE_RANGE[0] < t < TEMPERATURE_RANGE[1]
    fine = np.exp(np.linspace(math.log(TEMPERATURE_RANGE[0]), math.log(TEMPERATURE_RANGE[1]), 5000))
    assert nll(t) <= min(nll(x) for x in fine) + 1e-9


def test_leave_one_out_rebuilds_only_the_own_label() -> None:
    # Label a: prompt e0 and one example e1. Left out, a falls back to its prompt e0, so the row of
    # that example is [e1 . e0, e1 . proto(b)] = [0, > 0]: it is misclassified as b. b's three
    # examples stay nearer b's own rebuilt prototype than a's full one.
    bank = build_bank(
        [
            LabelEmbeddings("a", _basis(0), _basis(1)),
            LabelEmbeddings("b", _none(), np.vstack([_basis(1, 1), _unit([[0, 1, 1, 0]])])),
        ]
    )
    assert bank.loo_items == 4  # one of a, three of b
    assert bank.loo_accuracy == pytest.approx(3 / 4)
    assert bank.calibrated


def test_too_few_examples_keep_the_uncalibrated_default() -> None:
    labels = [
        LabelEmbeddings("cat", _basis(0), _basis(0, 0)),
        LabelEmbeddings("dog", _basis(1), _none()),
    ]
    bank = build_bank(labels)
    assert bank.loo_items == 2 < MIN_CALIBRATION_EXAMPLES
    assert not bank.calibrated and bank.temperature == DEFAULT_TEMPERATURE
    assert bank.loo_accuracy == 1.0  # still measured, with the default temperature


def test_many_examples_of_one_label_do_not_calibrate() -> None:
    labels = [LabelEmbeddings("cat", _none(), _basis(0, 0, 0, 0, 0)), LabelEmbeddings("dog", _basis(1), _none())]
    bank = build_bank(labels)
    assert bank.loo_items == 5 and not bank.calibrated and bank.temperature == DEFAULT_TEMPERATURE


def test_prompts_only_has_nothing_to_measure() -> None:
    bank = build_bank([LabelEmbeddings("cat", _basis(0), _none()), LabelEmbeddings("dog", _basis(1), _none())])
    assert not bank.calibrated and bank.loo_items == 0
    assert bank.loo_accuracy is None and bank.ece is None and bank.nll is None
    report = bank.report()
    assert report["calibrated"] is False and report["counts"]["dog"] == {"prompts": 1, "examples": 0}


def test_a_lone_example_is_skipped_in_leave_one_out() -> None:
    bank = build_bank([LabelEmbeddings("cat", _none(), _basis(0)), LabelEmbeddings("dog", _none(), _basis(1, 1))])
    assert bank.loo_items == 2  # cat's only example has no label to be scored against once left out


def test_the_bank_is_read_only() -> None:
    bank = build_bank([LabelEmbeddings("cat", _basis(0), _none())])
    with pytest.raises(ValueError):
        bank.prototypes[0, 0] = 2.0


# -- ECE --------------------------------------------------------------------------------------


def test_ece_of_calibrated_probabilities_is_zero() -> None:
    # 100 items at confidence 0.75, 75 right; 100 at 0.95, 95 right.
    probs = np.array([[0.75, 0.25]] * 100 + [[0.95, 0.05]] * 100)
    targets = np.array([0] * 75 + [1] * 25 + [0] * 95 + [1] * 5)
    assert expected_calibration_error(probs, targets) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_sampled_calibrated_probabilities_is_small() -> None:
    rng = np.random.default_rng(7)
    confidence = rng.uniform(0.5, 1.0, size=20000)
    probs = np.stack([confidence, 1 - confidence], axis=1)
    targets = (rng.uniform(size=20000) > confidence).astype(np.int64)  # class 0 with probability confidence
    assert expected_calibration_error(probs, targets) < 0.02


def test_ece_of_overconfident_probabilities() -> None:
    probs = np.array([[1.0, 0.0]] * 10)
    targets = np.array([0] * 5 + [1] * 5)
    assert expected_calibration_error(probs, targets) == pytest.approx(0.5)


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], r"at least one label"),
        ([LabelEmbeddings("a", _basis(0), _none()), LabelEmbeddings("b", _basis(0, dim=5), _none(5))], r"'b'.*size 5"),
        ([LabelEmbeddings("a", _basis(0), _none()), LabelEmbeddings("b", _none(), _basis(0, dim=5))], r"'b'.*size 5"),
        ([LabelEmbeddings("a", _none(), _none())], r"label 'a': no prompt and no example embeddings"),
        ([LabelEmbeddings("a", np.full((1, 4), np.nan), _none())], r"label 'a' prompts: non-finite"),
        ([LabelEmbeddings("a", _basis(0), np.full((1, 4), np.inf))], r"label 'a' examples: non-finite"),
        ([LabelEmbeddings("a", np.zeros((1, 4)), _none())], r"label 'a' prompts: row 0 is a zero vector"),
        ([LabelEmbeddings("a", np.ones(4), _none())], r"label 'a' prompts: expected a 2-D array"),
        ([LabelEmbeddings("a", _basis(0, 0) * [[1], [-1]], _none())], r"'a': the mean prompt embedding is a zero"),
        ([LabelEmbeddings("a", _basis(0), _none()), LabelEmbeddings("a", _basis(1), _none())], r"duplicate .*'a'"),
    ],
)
def test_bad_banks_are_refused(labels: list[LabelEmbeddings], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_bank(labels)


def test_prototype_refuses_mismatched_sizes() -> None:
    with pytest.raises(ValueError, match=r"examples: embedding size 5, expected 4"):
        prototype(_basis(0), _basis(0, dim=5))


@pytest.mark.parametrize(
    ("rows", "targets", "message"),
    [
        (np.zeros((0, 3)), np.zeros(0, dtype=int), r"M >= 1"),
        (np.zeros((2, 3)), np.zeros(3, dtype=int), r"targets \[M\]"),
        (np.zeros((2, 3)), np.array([0, 3]), r"indices in \[0, 3\)"),
        (np.zeros((2, 3)), np.array([0.0, 1.0]), r"integer label indices"),
        (np.full((2, 3), np.nan), np.array([0, 1]), r"non-finite"),
        (np.zeros((2, 1)), np.array([0, 0]), r"at least 2 labels"),
    ],
)
def test_fit_temperature_refuses_bad_rows(rows: np.ndarray, targets: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_temperature(rows, targets)
