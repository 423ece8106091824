"""Synthetic HIGGS-like events from generated four-vector kinematics.

The UCI HIGGS file can't be downloaded on an offline machine, so axon generates events with
the same 29-column layout and the same *physics structure* (Baldi, Sadowski & Whiteson 2014):

- signal: gg -> H0 (425 GeV) -> W H+- ; H+- (325 GeV) -> W h ; h (125 GeV) -> b b
- background: t tbar (m_t = 173 GeV) -> W b W b

Both give one lepton, one neutrino (missing energy) and four jets, two from b quarks. The 21
low-level features are the smeared kinematics; the 7 high-level features are *computed* from
the reconstructed four-vectors as HIGGS defines them, so a network can learn the resonances.
Energies are in units of 100 GeV so values sit near 1, as HIGGS's normalised columns do.
"""

from __future__ import annotations

import numpy as np

# Masses and widths in GeV (PDG values; the heavy Higgs masses are Baldi et al.'s benchmark).
M_W, G_W = 80.4, 2.1
M_TOP, G_TOP = 173.0, 1.4
M_H0, G_H0 = 425.0, 8.0
M_HC, G_HC = 325.0, 6.0
M_H, G_H = 125.0, 0.5
M_B = 4.7
UNIT_GEV = 100.0

# Detector model: calorimeter-like jet resolution, a sharp lepton, a noisy missing-energy vector.
JET_STOCHASTIC, JET_CONSTANT = 1.0, 0.08  # sigma/E = a/sqrt(E) (+) c
LEPTON_RESOLUTION = 0.02
MET_NOISE_GEV = 20.0
# b-tag categories 0 (none), 1 (loose), 2 (tight): probabilities for true b and light jets.
BTAG_B = (0.30, 0.20, 0.50)
BTAG_LIGHT = (0.85, 0.11, 0.04)


def _breit_wigner(m0: float, gamma: float, n: int, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Relativistic-enough resonance masses: a Cauchy lineshape clipped to a physical window."""
    return np.clip(m0 + 0.5 * gamma * rng.standard_cauchy(n), lo, hi)


def _produce(mass: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A system of the given mass with a soft transverse boost and a central rapidity."""
    n = len(mass)
    pt = rng.exponential(40.0, n)
    y = rng.normal(0.0, 1.0, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    mt = np.sqrt(mass**2 + pt**2)
    return np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)], axis=1)


def _boost(p: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Lorentz-boost four-vectors ``p`` (E, px, py, pz) by velocity ``beta`` (N, 3)."""
    b2 = np.sum(beta**2, axis=1)
    gamma = 1.0 / np.sqrt(1.0 - np.minimum(b2, 1 - 1e-12))
    bp = np.sum(beta * p[:, 1:], axis=1)
    coef = np.where(b2 > 0, (gamma - 1.0) / np.where(b2 > 0, b2, 1.0), 0.0)
    e = gamma * (p[:, 0] + bp)
    vec = p[:, 1:] + (coef * bp + gamma * p[:, 0])[:, None] * beta
    return np.concatenate([e[:, None], vec], axis=1)


def _two_body(parent: np.ndarray, m1: np.ndarray | float, m2: np.ndarray | float, rng: np.random.Generator):
    """Isotropic two-body decay in the parent's rest frame, boosted to the lab."""
    n = len(parent)
    big_m = mass(parent)
    m1 = np.broadcast_to(np.asarray(m1, float), (n,))
    m2 = np.broadcast_to(np.asarray(m2, float), (n,))
    # Guard against clipped lineshapes putting a decay below threshold.
    big_m = np.maximum(big_m, m1 + m2 + 1e-3)
    q = np.sqrt((big_m**2 - (m1 + m2) ** 2) * (big_m**2 - (m1 - m2) ** 2)) / (2 * big_m)
    cos_t = rng.uniform(-1, 1, n)
    sin_t = np.sqrt(1 - cos_t**2)
    phi = rng.uniform(-np.pi, np.pi, n)
    direction = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)
    d1 = np.concatenate([np.sqrt(q**2 + m1**2)[:, None], q[:, None] * direction], axis=1)
    d2 = np.concatenate([np.sqrt(q**2 + m2**2)[:, None], -q[:, None] * direction], axis=1)
    beta = parent[:, 1:] / parent[:, :1]
    return _boost(d1, beta), _boost(d2, beta)


def mass(p: np.ndarray) -> np.ndarray:
    """Invariant mass, clamped at zero against rounding."""
    return np.sqrt(np.maximum(p[:, 0] ** 2 - np.sum(p[:, 1:] ** 2, axis=1), 0.0))


def pt(p: np.ndarray) -> np.ndarray:
    return np.hypot(p[:, 1], p[:, 2])


def eta(p: np.ndarray) -> np.ndarray:
    return np.arcsinh(p[:, 3] / np.maximum(pt(p), 1e-9))


def phi(p: np.ndarray) -> np.ndarray:
    return np.arctan2(p[:, 2], p[:, 1])


def _smear(p: np.ndarray, rel_sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    scale = np.clip(1.0 + rel_sigma * rng.standard_normal(len(p)), 0.2, None)
    return p * scale[:, None]


def _jet_resolution(p: np.ndarray) -> np.ndarray:
    return np.hypot(JET_STOCHASTIC / np.sqrt(np.maximum(p[:, 0], 1.0)), JET_CONSTANT)


def _btag(n: int, probs: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    return rng.choice(3, size=n, p=probs).astype(float)


def _signal_partons(n: int, rng: np.random.Generator):
    h0 = _produce(_breit_wigner(M_H0, G_H0, n, rng, 380.0, 470.0), rng)
    m_w1 = _breit_wigner(M_W, G_W, n, rng, 60.0, 100.0)
    m_hc = _breit_wigner(M_HC, G_HC, n, rng, 300.0, 340.0)
    w1, hc = _two_body(h0, m_w1, m_hc, rng)
    w2, higgs = _two_body(hc, _breit_wigner(M_W, G_W, n, rng, 60.0, 100.0), _breit_wigner(M_H, G_H, n, rng, 120.0, 130.0), rng)
    b1, b2 = _two_body(higgs, M_B, M_B, rng)
    return w1, w2, b1, b2


def _background_partons(n: int, rng: np.random.Generator):
    # The t tbar invariant mass falls steeply above threshold.
    m_tt = 2 * M_TOP + 10.0 + rng.exponential(110.0, n)
    system = _produce(m_tt, rng)
    t1, t2 = _two_body(
        system, _breit_wigner(M_TOP, G_TOP, n, rng, 165.0, 181.0), _breit_wigner(M_TOP, G_TOP, n, rng, 165.0, 181.0), rng
    )
    w1, b1 = _two_body(t1, _breit_wigner(M_W, G_W, n, rng, 60.0, 100.0), M_B, rng)
    w2, b2 = _two_body(t2, _breit_wigner(M_W, G_W, n, rng, 60.0, 100.0), M_B, rng)
    return w1, w2, b1, b2


def _neutrino_pz(lep: np.ndarray, met_x: np.ndarray, met_y: np.ndarray) -> np.ndarray:
    """Solve m(l nu) = m_W for the neutrino's pz; take the smaller root, or the real part."""
    mu = 0.5 * M_W**2 + lep[:, 1] * met_x + lep[:, 2] * met_y
    pt_l2 = np.maximum(lep[:, 1] ** 2 + lep[:, 2] ** 2, 1e-9)
    met2 = met_x**2 + met_y**2
    a = mu * lep[:, 3] / pt_l2
    disc = a**2 - (lep[:, 0] ** 2 * met2 - mu**2) / pt_l2
    root = np.sqrt(np.maximum(disc, 0.0))
    return np.where(np.abs(a - root) < np.abs(a + root), a - root, a + root)


def _events(w1, w2, b1, b2, rng: np.random.Generator) -> np.ndarray:
    """Decay the Ws, apply the detector, reconstruct, and return the 28 feature columns."""
    n = len(w1)
    # Exactly one W decays to a lepton and neutrino; which one is random.
    lep_first = rng.random(n) < 0.5
    w_lep = np.where(lep_first[:, None], w1, w2)
    w_had = np.where(lep_first[:, None], w2, w1)
    lepton, nu = _two_body(w_lep, 0.0, 0.0, rng)
    q1, q2 = _two_body(w_had, 0.0, 0.0, rng)

    lepton = _smear(lepton, np.full(n, LEPTON_RESOLUTION), rng)
    true_jets = [b1, b2, q1, q2]
    jets = [_smear(j, _jet_resolution(j), rng) for j in true_jets]
    mismeasured = sum(j - s for j, s in zip(true_jets, jets))
    met_x = nu[:, 1] + mismeasured[:, 1] + MET_NOISE_GEV * rng.standard_normal(n)
    met_y = nu[:, 2] + mismeasured[:, 2] + MET_NOISE_GEV * rng.standard_normal(n)
    tags = [_btag(n, BTAG_B, rng), _btag(n, BTAG_B, rng), _btag(n, BTAG_LIGHT, rng), _btag(n, BTAG_LIGHT, rng)]

    jet_p = np.stack(jets, axis=1)  # (n, 4 jets, 4)
    jet_tag = np.stack(tags, axis=1)  # (n, 4)
    # The detector reports jets ordered by pT; the truth labels are gone from here on.
    order = np.argsort(-np.hypot(jet_p[:, :, 1], jet_p[:, :, 2]), axis=1)
    jet_p = np.take_along_axis(jet_p, order[:, :, None], axis=1)
    jet_tag = np.take_along_axis(jet_tag, order, axis=1)

    low = [pt(lepton), eta(lepton), phi(lepton), np.hypot(met_x, met_y), np.arctan2(met_y, met_x)]
    for k in range(4):
        jk = jet_p[:, k]
        low += [pt(jk), eta(jk), phi(jk), jet_tag[:, k]]

    # Reconstruction as an analysis would: the two most b-like jets (pT breaks ties) are the bs.
    rank = np.argsort(-(jet_tag * 1000.0 + np.hypot(jet_p[:, :, 1], jet_p[:, :, 2])), axis=1)
    ranked = np.take_along_axis(jet_p, rank[:, :, None], axis=1)
    bj1, bj2, wj1, wj2 = ranked[:, 0], ranked[:, 1], ranked[:, 2], ranked[:, 3]
    nu_pz = _neutrino_pz(lepton, met_x, met_y)
    nu_reco = np.stack([np.sqrt(met_x**2 + met_y**2 + nu_pz**2), met_x, met_y, nu_pz], axis=1)
    w_jj = wj1 + wj2
    w_lv = lepton + nu_reco
    # The b closer in angle to the hadronic W completes the hadronic top candidate.
    closer_first = _delta_r(bj1, w_jj) < _delta_r(bj2, w_jj)
    b_had = np.where(closer_first[:, None], bj1, bj2)
    b_lep = np.where(closer_first[:, None], bj2, bj1)
    high = [
        mass(w_jj),
        mass(w_jj + b_had),
        mass(w_lv),
        mass(w_lv + b_lep),
        mass(bj1 + bj2),
        mass(w_jj + bj1 + bj2),
        mass(w_jj + w_lv + bj1 + bj2),
    ]
    cols = np.stack(low + high, axis=1)
    energy_like = np.array(ENERGY_COLUMNS)
    cols[:, energy_like] /= UNIT_GEV
    return cols


def _delta_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dphi = np.angle(np.exp(1j * (phi(a) - phi(b))))
    return np.hypot(eta(a) - eta(b), dphi)


# Columns carrying GeV (pT, missing energy, masses), divided by UNIT_GEV.
ENERGY_COLUMNS = (0, 3, 5, 9, 13, 17, 21, 22, 23, 24, 25, 26, 27)


def generate(n: int, seed: int, signal_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` events: features (n, 28) float32 and labels (n,) float32 in {0, 1}."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < signal_fraction).astype(np.float32)
    n_sig = int(labels.sum())
    features = np.empty((n, 28), dtype=np.float64)
    if n_sig:
        features[labels == 1] = _events(*_signal_partons(n_sig, rng), rng)
    if n - n_sig:
        features[labels == 0] = _events(*_background_partons(n - n_sig, rng), rng)
    return features.astype(np.float32), labels
