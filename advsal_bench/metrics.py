"""Detection metrics: accuracy on clean / adversarial data, ROC AUC, TPR at a fixed FPR."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def detection_metrics(scores_clean: np.ndarray, scores_adv: np.ndarray, *, threshold: float = 0.5) -> dict[str, float]:
    """Scores are D's probability of 'adversarial'; the decision is score >= threshold."""
    scores_clean = np.asarray(scores_clean, np.float64).ravel()
    scores_adv = np.asarray(scores_adv, np.float64).ravel()
    d_clean = float(np.mean(scores_clean < threshold)) if scores_clean.size else float("nan")
    d_adv = float(np.mean(scores_adv >= threshold)) if scores_adv.size else float("nan")
    n = scores_clean.size + scores_adv.size
    d_accuracy = float((np.sum(scores_clean < threshold) + np.sum(scores_adv >= threshold)) / n) if n else float("nan")
    return {"d_clean": d_clean, "d_adv": d_adv, "d_accuracy": d_accuracy, "auc": auc(scores_clean, scores_adv)}


def auc(scores_clean: np.ndarray, scores_adv: np.ndarray) -> float:
    if len(scores_clean) == 0 or len(scores_adv) == 0:
        return float("nan")
    labels = np.concatenate([np.zeros(len(scores_clean)), np.ones(len(scores_adv))])
    return float(roc_auc_score(labels, np.concatenate([scores_clean, scores_adv])))


def threshold_at_fpr(scores_clean_val: np.ndarray, fpr: float) -> float:
    """Smallest threshold whose false-positive rate on clean validation scores is at most ``fpr``."""
    s = np.sort(np.asarray(scores_clean_val, np.float64).ravel())
    if s.size == 0:
        raise ValueError("threshold_at_fpr: expected clean validation scores, got none")
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"threshold_at_fpr: expected 0 <= fpr <= 1, got {fpr}")
    # At most k clean scores may lie at or above the threshold. The tolerance keeps decimal rates exact:
    # 0.29 * 100 is 28.999999999999996 in floating point, and 29 scores are meant.
    k = int(np.floor(fpr * s.size + 1e-9))
    if k >= s.size:
        return float("-inf")  # every clean score may be flagged: no threshold is needed
    if k == 0:
        return float(np.nextafter(s[-1], np.inf))
    # Threshold just above the (k+1)-th largest score keeps exactly <= k above it.
    return float(np.nextafter(s[-k - 1], np.inf))


def tpr_at_fpr(scores_clean_val: np.ndarray, scores_adv_test: np.ndarray, *, fpr: float = 0.05) -> float:
    thr = threshold_at_fpr(scores_clean_val, fpr)
    return float(np.mean(np.asarray(scores_adv_test).ravel() >= thr))


def operating_point_metrics(
    scores_clean_val: np.ndarray,
    scores_clean: np.ndarray,
    scores_adv: np.ndarray,
    fooled: np.ndarray,
    *,
    fpr: float = 0.05,
    threshold: float = 0.5,
) -> dict[str, float]:
    """The numbers reviewers ask for beyond accuracy.

    ``tpr_at_5_fpr``: detection rate on adversarial test images at the threshold that flags at most
    ``fpr`` of *clean validation* images (chosen before looking at test data); ``fpr_test`` is the
    false-positive rate that threshold really gives on clean test images. ``d_adv_fooling``: detection
    rate (at ``threshold``) on the adversarial images that actually fool f, the ones that matter.
    """
    scores_adv = np.asarray(scores_adv, np.float64).ravel()
    fooled = np.asarray(fooled, bool).ravel()
    if fooled.shape != scores_adv.shape:
        raise ValueError(f"fooled: expected one flag per adversarial score ({scores_adv.size}), got {fooled.size}")
    if len(np.asarray(scores_clean_val).ravel()):
        thr = threshold_at_fpr(scores_clean_val, fpr)
        tpr = float(np.mean(scores_adv >= thr)) if scores_adv.size else float("nan")
        fpr_test = float(np.mean(np.asarray(scores_clean, np.float64).ravel() >= thr))
    else:
        tpr = fpr_test = float("nan")
    d_fool = float(np.mean(scores_adv[fooled] >= threshold)) if fooled.any() else float("nan")
    return {"tpr_at_5_fpr" if fpr == 0.05 else f"tpr_at_{fpr:g}_fpr": tpr, "fpr_test": fpr_test,
            "d_adv_fooling": d_fool, "n_fooling": int(fooled.sum())}


def accuracy(logits_or_labels: np.ndarray, y: np.ndarray) -> float:
    pred = np.asarray(logits_or_labels)
    if pred.ndim > 1:
        pred = pred.argmax(axis=-1)
    return float(np.mean(pred == np.asarray(y)))
