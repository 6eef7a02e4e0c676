"""MAP@3, accuracy, per-class scores and the text report, on hand-computed cases and against sklearn."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support, top_k_accuracy_score

from utils.metrics import (
    accuracy,
    confusion_matrix,
    format_report,
    map_at_k,
    map_at_k_ranked,
    per_class_scores,
    top_k,
)


def kaggle_apk(actual: list[int], predicted: list[int], k: int = 3) -> float:
    """The competition's reference apk (ml_metrics), written out independently of utils.metrics."""
    predicted = predicted[:k]
    score, hits = 0.0, 0
    for i, p in enumerate(predicted):
        if p in actual and p not in predicted[:i]:
            hits += 1
            score += hits / (i + 1.0)
    return score / min(len(actual), k)


def test_map_at_3_hand_computed():
    ranked = np.array([[0, 1, 2]] * 4)
    # true label at rank 1, 2, 3 and not in the top 3
    assert map_at_k_ranked(np.array([0, 1, 2, 3]), ranked) == pytest.approx((1 + 1 / 2 + 1 / 3 + 0) / 4)
    assert map_at_k_ranked(np.array([2]), np.array([[5, 7, 2]])) == pytest.approx(1 / 3)
    assert map_at_k_ranked(np.array([2]), np.array([[5, 7, 9, 2]])) == 0.0  # rank 4 does not count at k=3
    # a repeated label counts at its first rank only (Kaggle's apk)
    assert map_at_k_ranked(np.array([1]), np.array([[0, 1, 1]])) == pytest.approx(1 / 2)


def test_map_at_3_from_scores_hand_computed():
    scores = np.array([[0.1, 0.7, 0.2, 0.0],   # true 1: rank 1
                       [0.4, 0.3, 0.2, 0.1],   # true 2: rank 3
                       [0.1, 0.2, 0.3, 0.4],   # true 0: rank 4 -> 0
                       [0.2, 0.5, 0.3, 0.0]])  # true 2: rank 2
    assert map_at_k(np.array([1, 2, 0, 2]), scores) == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4)


def test_top_k_breaks_ties_by_class_index():
    assert top_k(np.array([[0.25, 0.5, 0.25, 0.0]]), 3).tolist() == [[1, 0, 2]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_at_3_matches_independent_formulations(seed):
    rng = np.random.default_rng(seed)
    n, c = 500, 12
    scores = rng.random((n, c))
    scores[np.arange(n), rng.integers(0, c, n)] += rng.random(n)  # some skill, so all ranks occur
    y = rng.integers(0, c, n)
    ours = map_at_k(y, scores, 3)
    # 1) Kaggle's apk per clip on the ranked lists
    ranked = np.argsort(-scores, axis=1)[:, :3].tolist()
    assert ours == pytest.approx(np.mean([kaggle_apk([t], r) for t, r in zip(y, ranked, strict=True)]))
    # 2) from sklearn's top-k accuracies: P(rank = r) = acc@r - acc@(r-1), and MAP@3 = sum_r P(rank = r) / r
    acc = [0.0] + [top_k_accuracy_score(y, scores, k=k, labels=np.arange(c)) for k in (1, 2, 3)]
    assert ours == pytest.approx(sum((acc[r] - acc[r - 1]) / r for r in (1, 2, 3)))
    # 3) from the true label's rank: 1 + the number of classes scoring higher
    rank = (scores > scores[np.arange(n), y][:, None]).sum(axis=1) + 1
    assert ours == pytest.approx(np.where(rank <= 3, 1.0 / rank, 0.0).mean())


def test_map_rejects_bad_input():
    with pytest.raises(ValueError):
        map_at_k_ranked(np.array([0, 1]), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError):
        map_at_k_ranked(np.array([], dtype=int), np.zeros((0, 3), dtype=int))
    with pytest.raises(ValueError):
        map_at_k(np.array([0]), np.array([0.1, 0.9]))


def test_accuracy_and_per_class_scores_match_sklearn():
    rng = np.random.default_rng(3)
    n_classes = 6
    y = rng.integers(0, n_classes - 1, 200)  # class 5 never true: zero-division path
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, n_classes, 200))
    pred[pred == 4] = 3  # class 4 never predicted: zero-division path
    assert accuracy(y, pred) == pytest.approx(np.mean(y == pred))
    np.testing.assert_array_equal(confusion_matrix(y, pred, n_classes),
                                  sk_confusion_matrix(y, pred, labels=np.arange(n_classes)))
    s = per_class_scores(y, pred, n_classes)
    pr, re, f1, count = precision_recall_fscore_support(y, pred, labels=np.arange(n_classes), zero_division=0)
    np.testing.assert_allclose(s["precision"], pr)
    np.testing.assert_allclose(s["recall"], re)
    np.testing.assert_allclose(s["f1"], f1)
    np.testing.assert_array_equal(s["count"], count)


def test_format_report():
    classes = ["Cello", "Flute", "Oboe", "Bark"]
    y = np.array([0, 0, 1, 1, 1, 2])
    ranked = np.array([[0, 1, 2], [1, 0, 2], [1, 2, 0], [1, 0, 2], [2, 1, 0], [2, 0, 1]])
    report = format_report(y, ranked, classes)
    lines = report.splitlines()
    assert lines[0].split("|")[:6] == [f"{'LABEL':>30}  ", "  CNT  ", "   ACC   ", "   PR   ", "   RE   ",
                                       "    F1    "]
    cells = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")[1:6]]
             for line in lines if line.count("|") == 6 and "LABEL" not in line}
    # Bark has no clips: no row. Cello: 1 of 2 right, precision 1/1; Flute: 2 of 3, precision 2/3;
    # Oboe: 1 of 1, precision 1/2.
    assert set(cells) == {"Cello", "Flute", "Oboe", "average"}
    assert cells["Cello"] == ["002", "0.500", "1.00", "0.50", "0.667"]
    assert cells["Flute"] == ["003", "0.667", "0.67", "0.67", "0.667"]
    assert cells["Oboe"] == ["001", "1.000", "0.50", "1.00", "0.667"]
    # unweighted means over the three classes
    assert cells["average"] == ["006", f"{(0.5 + 2 / 3 + 1) / 3:.3f}", f"{(1 + 2 / 3 + 0.5) / 3:.2f}",
                                f"{(0.5 + 2 / 3 + 1) / 3:.2f}", f"{2 / 3:.3f}"]
    assert "Overall Accuracy: 66.667 %" in lines
    # ranks: 1, 2, 1, 1, 2, 1 -> (4 + 2 * 0.5) / 6
    assert lines[-1] == f"MAP@3: {(4 + 1) / 6:.4f}"
