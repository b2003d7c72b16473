"""Training losses with known target log-densities: forward KL and the Jeffreys divergence."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import margflow as mf

GAUSS = multivariate_normal([0.3, -0.2], [[1.0, 0.6], [0.6, 2.0]])
X = GAUSS.rvs(3000, random_state=np.random.default_rng(0))
FRESH = GAUSS.rvs(20000, random_state=np.random.default_rng(1))
SHORT = {"epochs": 30, "patience": 30, "progress": False}


def _flow(**kw):
    return mf.MAF(X, seed=1, n_layers=3, hidden=(16, 16), **kw)


def test_forward_kl_trains_as_nll_and_reports_the_divergence():
    """Same gradient as the NLL (identical weights); the loss value is KL(p‖q), matching a fresh
    estimate within the two estimates' standard errors."""
    a, b = _flow(), _flow()
    ha = a.fit(**SHORT)
    hb = b.fit(**SHORT, loss="kl", log_density=GAUSS.logpdf)
    np.testing.assert_array_equal(a.log_prob(FRESH), b.log_prob(FRESH))
    d = GAUSS.logpdf(FRESH) - b.log_prob(FRESH)
    se_val = d.std() / np.sqrt(0.2 * len(X))  # the validation split holds 20% of the samples
    assert abs(hb.best_val_loss - d.mean()) < 4 * (se_val + d.std() / np.sqrt(len(d)))
    # the loss values differ from the NLL's by the (weighted) mean log p of the samples only
    offset = np.array(hb.loss) - np.array(ha.loss)
    assert offset.std() < 0.01 * abs(offset.mean())


def test_jeffreys_ignores_the_normalisation_and_measures_the_divergence():
    c, d = _flow(), _flow()
    hc = c.fit(**SHORT, loss="jeffreys", log_density=GAUSS.logpdf)
    hd = d.fit(**SHORT, loss="jeffreys", log_density=lambda t: GAUSS.logpdf(t) + 100.0)
    np.testing.assert_allclose(hc.loss, hd.loss, atol=1e-3)  # float32: 100 is carried at ~1e-5
    np.testing.assert_allclose(c.log_prob(FRESH), d.log_prob(FRESH), atol=1e-3)
    s = c.sample(20000, seed=2)
    kl_pq = GAUSS.logpdf(FRESH) - c.log_prob(FRESH)
    kl_qp = c.log_prob(s) - GAUSS.logpdf(s)
    se = (kl_pq.std() + kl_qp.std()) / np.sqrt(0.2 * len(X))
    assert abs(hc.best_val_loss - (kl_pq.mean() + kl_qp.mean())) < 4 * se


def test_jeffreys_training_fits_a_representable_target():
    """Trained on the Jeffreys divergence alone, the flow fits the Gaussian as well as the NLL does."""
    c, a = _flow(), _flow()
    c.fit(**SHORT, loss="jeffreys", log_density=GAUSS.logpdf)
    a.fit(**SHORT)
    kl_j = np.mean(GAUSS.logpdf(FRESH) - c.log_prob(FRESH))
    kl_nll = np.mean(GAUSS.logpdf(FRESH) - a.log_prob(FRESH))
    assert kl_j < 0.01 and kl_j < 2 * kl_nll + 0.002, (kl_j, kl_nll)


def test_loss_inputs_say_what_is_wrong():
    f = _flow()
    with pytest.raises(ValueError, match="loss must be one of"):
        f.fit(loss="reverse", **SHORT)
    with pytest.raises(ValueError, match="needs log_density"):
        f.fit(loss="jeffreys", **SHORT)
    with pytest.raises(ValueError, match="takes no log_density"):
        f.fit(log_density=GAUSS.logpdf, **SHORT)
    with pytest.raises(ValueError, match="one value per sample"):
        f.fit(loss="kl", log_density=np.zeros(10), **SHORT)
    with pytest.raises(ValueError, match="not finite"):
        f.fit(loss="kl", log_density=np.full(len(X), -np.inf), **SHORT)
