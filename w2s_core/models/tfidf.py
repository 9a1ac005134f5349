"""TF-IDF + logistic regression: a fast, non-neural weak teacher.

A teacher with a different inductive bias from the transformers (bag of n-grams) makes the
multi-teacher methods meaningful; it trains in about a second on a few thousand tweets.
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold

# A class absent from training still gets this probability: downstream NLL/ECE and
# log-based losses would otherwise see log(0).
MISSING_CLASS_PROB = 1e-6
C_GRID = (0.5, 2.0, 8.0)  # light tuning: sublinear tf-idf usually wants C in the low tens


def _vectorizer(min_df: int) -> TfidfVectorizer:
    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=min_df,
                           strip_accents="unicode", dtype=np.float32)


def tfidf_fit_predict(train_texts: list[str], train_labels: np.ndarray | list[int],
                      n_classes: int, predict_texts: dict[str, list[str]],
                      seed: int) -> dict[str, np.ndarray]:
    """Fit on ``train_texts``; ``{key: (N, n_classes) float32 probabilities}`` per predict set.

    C is chosen by 3-fold cross-validated log loss when every class has at least 3 examples,
    else fixed at 2. Columns follow class ids 0..n_classes-1 even if some are missing.
    """
    y = np.asarray(train_labels, dtype=np.int64)
    if len(train_texts) != len(y) or len(y) == 0:
        raise ValueError(f"{len(train_texts)} training texts but {len(y)} labels")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got {y.min()}..{y.max()}")
    try:
        vec = _vectorizer(min_df=2)
        x = vec.fit_transform(train_texts)
    except ValueError:  # tiny training sets: no n-gram occurs twice
        vec = _vectorizer(min_df=1)
        x = vec.fit_transform(train_texts)

    present = np.unique(y)
    if len(present) == 1:  # logistic regression needs two classes; predict the only one seen
        probs = np.full(n_classes, MISSING_CLASS_PROB, dtype=np.float64)
        probs[present[0]] = 1.0
        probs /= probs.sum()
        return {k: np.tile(probs, (len(t), 1)).astype(np.float32)
                for k, t in predict_texts.items()}

    clf = LogisticRegression(C=2.0, max_iter=2000, random_state=seed)
    counts = np.bincount(y)[present]
    if counts.min() >= 3 and len(y) >= 30:
        cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
        search = GridSearchCV(clf, {"C": list(C_GRID)}, cv=cv, scoring="neg_log_loss")
        clf = search.fit(x, y).best_estimator_
    else:
        clf.fit(x, y)

    out: dict[str, np.ndarray] = {}
    for key, texts in predict_texts.items():
        full = np.full((len(texts), n_classes), MISSING_CLASS_PROB, dtype=np.float64)
        if len(texts):
            full[:, clf.classes_] = clf.predict_proba(vec.transform(texts))
        out[key] = (full / full.sum(axis=1, keepdims=True)).astype(np.float32)
    return out
