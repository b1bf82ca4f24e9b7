"""The data reconstruction error against scikit-learn's pipeline of NannyML's method
(mean imputation, StandardScaler, PCA keeping 65 % of the variance, inverse transform),
and the cross-fitted reference errors against fresh reference-like rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from streamdrift import reconstruction, synthetic


def _with_missing(x: np.ndarray, share: float, seed: int) -> np.ndarray:
    x = x.copy()
    x[np.random.default_rng(seed).uniform(size=x.shape) < share] = np.nan
    return x


def _sklearn_errors(reference: np.ndarray, stream: np.ndarray, variance: float):
    """NannyML's reconstruction error with scikit-learn's own pieces."""
    prep = make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()).fit(reference)
    pca = PCA(n_components=variance, svd_solver="full").fit(prep.transform(reference))
    z = prep.transform(stream)
    rebuilt = pca.inverse_transform(pca.transform(z))
    return np.linalg.norm(z - rebuilt, axis=1), pca.n_components_


@pytest.mark.parametrize(("d", "variance"), [(5, 0.65), (20, 0.65), (20, 0.9), (50, 0.65)])
def test_errors_match_scikit_learns_pipeline_with_missing_values(d, variance):
    rng = np.random.default_rng(d)
    reference = _with_missing(synthetic.feature_mix(rng, 3000, d), 0.05, 1)
    stream = _with_missing(synthetic.feature_mix(rng, 2000, d), 0.1, 2)
    stream[:5] = np.nan  # rows with no value at all
    stream[5:10, :] = np.nan
    stream[5:10, 0] = 1.0  # ... and with one value only: the rest imputed
    fitted = reconstruction.fit(reference, [f"x{j}" for j in range(d)], variance)
    assert fitted is not None
    model, _ = fitted
    ours = reconstruction.errors(stream, *model.arrays())
    want, k = _sklearn_errors(reference, stream, variance)
    assert len(model.components) == k
    assert np.isnan(ours[:5]).all()
    np.testing.assert_allclose(ours[5:], want[5:], rtol=1e-9, atol=1e-9)
    explained = PCA(n_components=k).fit(
        make_pipeline(SimpleImputer(), StandardScaler()).fit_transform(reference)
    )
    assert model.explained_variance == pytest.approx(
        explained.explained_variance_ratio_.sum(), rel=1e-9
    )


def test_one_component_is_always_left_out():
    """Two independent features: PCA needs both for 65 % of the variance, which would
    rebuild every event exactly (error 0); the model keeps one, and the error is the
    distance to the first principal axis."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 2))
    fitted = reconstruction.fit(x, ["a", "b"])
    assert fitted is not None
    model, _ = fitted
    assert len(model.components) == 1
    pca = PCA(n_components=1).fit(StandardScaler().fit_transform(x))
    z = StandardScaler().fit(x).transform(x[:100])
    want = np.linalg.norm(z - pca.inverse_transform(pca.transform(z)), axis=1)
    np.testing.assert_allclose(reconstruction.errors(x[:100], *model.arrays()), want, rtol=1e-9)


def test_too_little_to_fit():
    assert reconstruction.fit(np.ones((5000, 1)), ["a"]) is None
    assert reconstruction.fit(np.ones((100, 4)), list("abcd")) is None


@pytest.mark.parametrize(("n", "d"), [(2000, 50), (500, 20)])
def test_cross_fitted_edges_are_not_optimistic(n, d):
    """Fresh rows from the reference's distribution fill the top decile of the
    reference's cross-fitted errors at about 10 %, while the in-sample errors (PCA
    fitted to the very rows) put clearly more than 10 % of them above their top decile:
    a large healthy window would look drifted against in-sample edges. One reference's
    decile is itself uncertain (±0.7 points for 2,000 rows), so four are averaged."""
    rng = np.random.default_rng(7)
    fresh = synthetic.feature_mix(rng, 100_000, d)
    above_cross, above_in_sample = [], []
    for _ in range(4):
        reference = synthetic.feature_mix(rng, n, d)
        fitted = reconstruction.fit(reference, [f"x{j}" for j in range(d)])
        assert fitted is not None
        model, cross = fitted
        stream = reconstruction.errors(fresh, *model.arrays())
        in_sample = reconstruction.errors(reference, *model.arrays())
        above_cross.append(float(np.mean(stream > np.quantile(cross, 0.9))))
        above_in_sample.append(float(np.mean(stream > np.quantile(in_sample, 0.9))))
    assert 0.09 <= np.mean(above_cross) <= 0.11, above_cross
    assert np.mean(above_in_sample) >= 0.12, above_in_sample
    assert all(i > c for i, c in zip(above_in_sample, above_cross, strict=True))


def test_a_flipped_correlation_raises_the_errors_and_leaves_the_marginals():
    """The case it is for: two features correlated +0.8 in the reference and -0.8 in the
    stream, each with the same marginal distribution."""
    rng = np.random.default_rng(3)

    def rows(rho: float, n: int) -> np.ndarray:
        cov = np.eye(4)
        cov[0, 1] = cov[1, 0] = rho
        return rng.multivariate_normal(np.zeros(4), cov, n)

    fitted = reconstruction.fit(rows(0.8, 5000), list("abcd"))
    assert fitted is not None
    model, cross = fitted
    same, flipped = rows(0.8, 5000), rows(-0.8, 5000)
    edge = np.quantile(cross, 0.9)
    assert np.mean(reconstruction.errors(same, *model.arrays()) > edge) < 0.12
    assert np.mean(reconstruction.errors(flipped, *model.arrays()) > edge) > 0.3
    np.testing.assert_allclose(flipped.std(axis=0), same.std(axis=0), rtol=0.05)
