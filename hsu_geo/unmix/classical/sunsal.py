"""Sparse unmixing against a whole spectral library: SUnSAL (Bioucas-Dias & Figueiredo 2010).

Problem, per pixel ``y (L,)`` with library ``M (k, L)`` (rows = spectra)::

    min_a  1/2 ||Mᵀa - y||² + λ ||a||₁   s.t.  a >= 0   [and 1ᵀa = 1 with sum_to_one]

solved by ADMM (split ``a = z``) in matrix form for all pixels of a chunk at once: the
``x``-step is one ``(k, k)`` inverse ``(G + μI)⁻¹`` (``G = M Mᵀ``) applied to a ``(k, N)``
array, the ``z``-step an elementwise shrinkage ``max(x - d - λ/μ, 0)``. The penalty ``μ`` is
rebalanced every 10 iterations (primal vs dual residual, as in the authors' code) and pixels
leave the loop as soon as both their residuals are below ``tol`` (relative), so only the hard
pixels pay for many iterations. No Python loop runs over pixels.

Library rows are scaled to unit norm inside the solver, so one λ treats bright and dark
spectra alike and λ is in the units of ``y``: a library member stays at zero when its
correlation with the residual, ``m̂ᵀ(y - Mᵀa)``, is below λ. White noise of standard deviation
σ per band gives ``m̂ᵀn ~ N(0, σ²)``, hence the a-priori choice ``λ = c σ̂`` with ``σ̂`` the
noise estimated from the scene (see :class:`SunsalUnmixer`).

With ``a >= 0`` and ``1ᵀa = 1`` the ℓ1 norm is constant, so λ loses its effect (the paper's
remark; here only the unit-norm weighting is left); sparse unmixing therefore runs without
sum-to-one and the sum ``1ᵀa`` absorbs the per-pixel brightness (as
:func:`hsu_geo.unmix.classical.lsq.scaled_fcls` does). ``collaborative=True`` replaces the ℓ1
term by ``λ Σ_j ||A_j||₂`` over the rows of ``A`` (one library member across the pixels of a
batch; CLSUnSAL, Iordache et al. 2014), whose shrinkage is row-wise.

Libraries are highly coherent (many pairs of splib07 minerals are within 0.01 rad), so the
ℓ1 solution spreads a mineral over its near-duplicates; :class:`SunsalUnmixer` therefore
prunes the candidates by backward elimination against the noise level (see
:class:`SunsalConfig`).

Shapes: ``Y (N, L)`` pixels as rows, ``M (k, L)`` → ``A (N, k)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError
from hsu_geo.unmix.base import Unmixer

#: iterations between convergence checks / μ updates (the authors' code uses 10)
CHECK_EVERY = 10
#: μ is doubled / halved when one residual exceeds the other by this factor
MU_BALANCE = 10.0
#: pixels per internal batch (bounds the (k, n) float64 work arrays)
BATCH = 65_536


@dataclass
class SunsalInfo:
    """Convergence record of one :func:`sunsal` call."""

    iterations: int
    converged: int
    pixels: int
    mu: float


def _check(Y: ArrayLike, M: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    Y = np.asarray(Y)
    M = np.asarray(M, dtype=np.float64)
    if Y.ndim != 2:
        raise InvalidSceneError(f"pixel matrix Y must be 2-D (N pixels, L bands); got {Y.shape}")
    if M.ndim != 2 or M.shape[0] < 1:
        raise EndmemberError(f"library matrix M must be 2-D (k >= 1, L bands); got {M.shape}")
    if Y.shape[1] != M.shape[1]:
        raise EndmemberError(f"library spectra have {M.shape[1]} bands but the pixels have "
                             f"{Y.shape[1]}; resample the library to the scene bands first")
    if not np.isfinite(M).all():
        raise EndmemberError("library matrix M contains NaN or infinite values")
    if not np.isfinite(Y).all():
        raise InvalidSceneError("pixel matrix Y contains NaN or infinite values; remove nodata "
                                "pixels before unmixing")
    return Y, M


def _x_operator(G: NDArray[np.float64], mu: float, w: NDArray[np.float64] | None
                ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """``F = (G + μI)⁻¹`` and, for the equality ``wᵀx = 1``, ``c = Fw / wᵀFw`` (the direction
    of the projection ``x -= c (wᵀx - 1)``)."""
    k = G.shape[0]
    F = np.linalg.inv(G + mu * np.eye(k))
    F = 0.5 * (F + F.T)
    if w is None:
        return F, None
    u = F @ w
    return F, u / float(w @ u)


def _admm(B: NDArray[np.float64], G: NDArray[np.float64], lam: float,
          w: NDArray[np.float64] | None, max_iter: int, tol: float, mu0: float,
          collaborative: bool = False) -> tuple[NDArray[np.float64], int, int, float]:
    """ADMM on ``B = M̂ Yᵀ (k, n)`` (normalised units), with the equality ``wᵀx = 1`` unless
    ``w`` is None. ``collaborative``: the penalty is ``λ Σ_j ||Z_j||₂`` over the rows (one
    library member across all n pixels), so pixels converge together. Returns
    ``(Z (k, n), iterations, converged pixels, final μ)``."""
    k, n = B.shape
    mu = mu0
    F, c = _x_operator(G, mu, w)
    # start from the unpenalised ridge solution, projected on the constraints
    X = F @ B
    if c is not None:
        X -= np.outer(c, w @ X - 1.0)
    Z = np.maximum(X, 0.0)
    D = np.zeros_like(Z)
    out = np.empty_like(Z)
    cols = np.arange(n)
    done = 0
    it = 0
    thr = tol * np.sqrt(k)
    for it in range(1, max_iter + 1):
        X = F @ (B + mu * (Z + D))
        if c is not None:
            X -= np.outer(c, w @ X - 1.0)
        Z_old = Z
        Z = X - D
        if collaborative:  # prox of λ/μ Σ_j ||z_j||₂ on the orthant: clip, then row shrink
            np.maximum(Z, 0.0, out=Z)
            rows = np.sqrt(np.einsum("in,in->i", Z, Z))
            Z *= (np.maximum(rows - lam / mu, 0.0) / np.maximum(rows, 1e-300))[:, None]
        else:
            Z -= lam / mu
            np.maximum(Z, 0.0, out=Z)
        D -= X - Z
        if it % CHECK_EVERY and it != max_iter:
            continue
        # per-pixel residuals relative to the pixel's own scale (its abundance norm);
        # collaborative: one Frobenius residual shared by all pixels
        sub = "in,in->" if collaborative else "in,in->n"
        dx, dz = X - Z, Z - Z_old
        scale = np.maximum(np.sqrt(np.einsum(sub, Z, Z)), 1e-12)
        rp = np.broadcast_to(np.sqrt(np.einsum(sub, dx, dx)) / scale, (Z.shape[1],))
        rd = np.broadcast_to(mu * np.sqrt(np.einsum(sub, dz, dz)) / scale, (Z.shape[1],))
        ok = (rp < thr) & (rd < thr)
        if ok.any():
            out[:, cols[ok]] = Z[:, ok]
            done += int(ok.sum())
            keep = ~ok
            cols, B, Z, D = cols[keep], B[:, keep], Z[:, keep], D[:, keep]
            rp, rd = rp[keep], rd[keep]
            if cols.size == 0:
                break
        # rebalance μ on the pixels still running (scaled dual D = u/μ changes with μ)
        p, d = float(np.median(rp)), float(np.median(rd))
        if p > MU_BALANCE * d:
            mu *= 2.0
            D *= 0.5
            F, c = _x_operator(G, mu, w)
        elif d > MU_BALANCE * p:
            mu *= 0.5
            D *= 2.0
            F, c = _x_operator(G, mu, w)
    if cols.size:
        out[:, cols] = Z
    return out, it, done, mu


def sunsal(Y: ArrayLike, M: ArrayLike, lam: float, *, sum_to_one: bool = False,
           collaborative: bool = False, max_iter: int = 2000, tol: float = 1e-5
           ) -> tuple[NDArray[np.float64], SunsalInfo]:
    """Sparse non-negative abundances ``A (N, k)`` of ``Y (N, L)`` on library ``M (k, L)``.

    ``lam`` (λ >= 0, units of ``Y``) weighs ``||a||₁`` with the library rows scaled to unit norm
    (see the module docstring); the returned ``A`` is on the library's own scale
    (``Y ≈ A @ M``). ``tol`` is the relative primal/dual residual at which a pixel stops;
    pixels still running after ``max_iter`` iterations keep their last (feasible: ``z >= 0``)
    iterate and are counted in ``info.pixels - info.converged``. With ``sum_to_one`` every row
    is renormalised to sum to one exactly. Returns ``(A float64, SunsalInfo)``.
    """
    Y, M = _check(Y, M)
    if not (np.isfinite(lam) and lam >= 0):
        raise ConfigError(f"lambda must be a finite number >= 0, got {lam}")
    if max_iter < 1:
        raise ConfigError(f"max_iter must be >= 1, got {max_iter}")
    if not (np.isfinite(tol) and tol > 0):
        raise ConfigError(f"tol must be > 0, got {tol}")
    norms = np.linalg.norm(M, axis=1)
    if not (norms > 0).all():
        raise EndmemberError(f"library spectrum {int(np.argmin(norms)) + 1} is all zeros")
    Mn = M / norms[:, None]
    G = Mn @ Mn.T
    G = 0.5 * (G + G.T)
    N, k = Y.shape[0], M.shape[0]
    A = np.zeros((N, k))
    if N == 0:
        return A, SunsalInfo(0, 0, 0, float("nan"))
    # work in units where the pixels have unit RMS: tolerances and μ are then scale-free
    ys = float(np.sqrt(np.mean(np.square(Y, dtype=np.float64))))
    ys = ys if ys > 0 else 1.0
    # sum-to-one ties the abundances' scale to 1, so the data must stay in its own units
    unit = 1.0 if sum_to_one else ys
    lam_n = lam / unit
    # 1ᵀa = 1 on the library's scale is w'x = 1 on the unit-norm rows (x_j = a_j ||m_j||)
    w = 1.0 / norms if sum_to_one else None
    mu0 = 0.05  # where the μ balancing settles on unit-norm rows and unit-RMS pixels
    its, conv, mu = 0, 0, mu0
    for s in range(0, N, BATCH):
        e = min(s + BATCH, N)
        B = Mn @ (Y[s:e].astype(np.float64).T / unit)
        Z, it, ok, mu_b = _admm(B, G, lam_n, w, max_iter, tol, mu0, collaborative)
        A[s:e] = Z.T
        its, conv, mu = max(its, it), conv + ok, mu_b
    A *= unit / norms[None, :]
    if sum_to_one:
        tot = A.sum(axis=1, keepdims=True)
        np.divide(A, tot, out=A, where=tot > 0)
    return A, SunsalInfo(its, conv, N, mu)


def noise_sigma(Y: ArrayLike) -> float:
    """Per-band noise standard deviation (units of ``Y``, RMS over bands) of pixels
    ``Y (N, L)``, by band-wise multiple regression (HySime step 1,
    :func:`hsu_geo.endmembers.hysime.estimate_noise`). Needs more pixels than bands."""
    from hsu_geo.endmembers.hysime import estimate_noise

    Y = np.asarray(Y, dtype=np.float64)
    if Y.shape[0] <= Y.shape[1]:
        raise InvalidSceneError(
            f"estimating the noise for sunsal's lambda needs more sampled pixels than bands "
            f"({Y.shape[0]} pixels, {Y.shape[1]} bands); give --set lam=VALUE (units of the "
            "scene) --set prune=false, or unmix a larger scene")
    W = estimate_noise(Y)
    return float(np.sqrt(np.mean(np.square(W))))




# --------------------------------------------------------------------------------------------
# the model: library in, the members present in the scene out

#: ``--set brightness=...`` values of sunsal
BRIGHTNESS_MODES = ("scaled", "none")
#: ``--set abundance=...`` values of sunsal: how the kept members are unmixed
ABUNDANCE_MODES = ("fcls", "sunsal")


@dataclass(frozen=True)
class SunsalConfig:
    """Settings of sunsal (``--set key=value``).

    Attributes:
        lam: λ in the units of the scene (the ℓ1 weight on unit-norm library spectra);
            0 (default) = ``lam_noise`` × the noise σ estimated from the pixel sample.
        lam_noise: λ in units of the estimated noise σ. 1.0 is the a-priori choice: a library
            member whose correlation with the residual is within one noise σ stays at zero.
            Larger λ does not help with coherent libraries (the ℓ1 term then prefers one
            spectrum close to the mixture over the true members; see benchmarks/sparse_unmixing.py).
        min_fraction: a library member is a candidate when its mean fraction over the
            sampled pixels is at least this (0.02: it makes up 2 % of the scene); a priori,
            checked for sensitivity on synthetic scenes only.
        prune: backward elimination of the candidates (on by default): coherent libraries
            spread a mineral's abundance over its near-duplicates (kaolinite / halloysite /
            dickite), so the candidate whose removal raises the least-squares residual least
            is dropped while that rise is below ``prune_noise`` × σ̂² per pixel (a member
            that fits only noise lowers it by about σ̂² per pixel: the partial F test).
        prune_noise: the rise a member must explain, in units of σ̂² per pixel (3, a priori).
        prune_pixels: pixels (evenly spaced in the fit sample) used for the pruning.
        duplicate_angle: library members within this spectral angle (radians) of each other
            count as one material for the candidate test (0.1 rad, a priori: the customary
            spectral-angle match threshold, ENVI SAM's default). A library that holds a
            material several times (a bundle of image spectra, or the USGS 1995 library's
            several samples per mineral) splits its fraction among them, so none may reach
            ``min_fraction`` alone; the member with the largest fraction among its
            near-duplicates then becomes a candidate when their fractions together reach
            ``min_fraction``. Members that reach it alone stay candidates; pruning decides.
            0 = the per-member test only.
        collaborative: select with the collaborative (row) penalty ``λ√n Σ_j ||A_j||₂`` of
            CLSUnSAL (Iordache et al. 2014) on the fit sample instead of per-pixel ℓ1.
        brightness: ``scaled`` (default) writes fractions that sum to one plus a per-pixel
            brightness (1 = the library's level), as fcls' brightness=scaled; ``none``: no
            brightness, i.e. plain FCLS at the library's level (``abundance=fcls``) or the raw
            SUnSAL abundances, not summing to one (``abundance=sunsal``). ``auto`` = scaled.
        sum_to_one: impose ``1ᵀa = 1`` inside ADMM (then λ hardly matters: the ℓ1 norm is
            almost constant); off by default.
        max_iter, tol: ADMM iteration limit and relative primal/dual residual per pixel.
        fit_pixels: at most this many sampled pixels (evenly spaced in the sample) are used to
            select the members.
        max_endmembers: keep at most this many members (largest mean fraction); 0 = no cap.
        abundance: how the kept members are unmixed: ``fcls`` (default: the exact FCLS of
            :mod:`~hsu_geo.unmix.classical.lsq`, scaled with brightness=scaled; the sparse
            penalty has done its work in the selection, and on the benchmark scenes this
            refit is as accurate as ADMM and ~20x faster) or ``sunsal`` (ADMM with λ on the
            kept members: abundances shrunk by the ℓ1 term).
    """

    lam: float = 0.0
    lam_noise: float = 1.0
    min_fraction: float = 0.02
    prune: bool = True
    prune_noise: float = 3.0
    prune_pixels: int = 10_000
    duplicate_angle: float = 0.1
    collaborative: bool = False
    brightness: str = "scaled"
    sum_to_one: bool = False
    max_iter: int = 2000
    tol: float = 1e-5
    fit_pixels: int = 10_000
    max_endmembers: int = 0
    abundance: str = "fcls"

    def __post_init__(self) -> None:
        mode = str(self.brightness).strip().lower()
        mode = "scaled" if mode == "auto" else mode
        if mode not in BRIGHTNESS_MODES:
            raise ConfigError(f"setting brightness={self.brightness!r}: choose one of "
                              f"{', '.join(BRIGHTNESS_MODES)}")
        object.__setattr__(self, "brightness", mode)
        how = str(self.abundance).strip().lower()
        if how not in ABUNDANCE_MODES:
            raise ConfigError(f"setting abundance={self.abundance!r}: choose one of "
                              f"{', '.join(ABUNDANCE_MODES)}")
        object.__setattr__(self, "abundance", how)
        for key, low in (("lam", 0.0), ("lam_noise", 0.0)):
            value = getattr(self, key)
            if not (np.isfinite(value) and value >= low):
                raise ConfigError(f"setting {key}={value}: give a number >= {low:g}")
        if not 0.0 < self.min_fraction < 1.0:
            raise ConfigError(f"setting min_fraction={self.min_fraction}: give a fraction "
                              "between 0 and 1 (e.g. 0.02)")
        if self.max_iter < 1 or self.fit_pixels < 1 or self.prune_pixels < 1 \
                or self.max_endmembers < 0:
            raise ConfigError("settings max_iter, fit_pixels and prune_pixels must be >= 1, "
                              "max_endmembers >= 0")
        if not (np.isfinite(self.duplicate_angle) and 0.0 <= self.duplicate_angle < np.pi / 2):
            raise ConfigError(f"setting duplicate_angle={self.duplicate_angle}: give an angle "
                              "in radians between 0 and pi/2 (e.g. 0.1; 0 = off)")
        if not (np.isfinite(self.prune_noise) and self.prune_noise >= 0):
            raise ConfigError(f"setting prune_noise={self.prune_noise}: give a number >= 0")
        if not (np.isfinite(self.tol) and self.tol > 0):
            raise ConfigError(f"setting tol={self.tol}: give a number > 0 (e.g. 1e-5)")
        if self.sum_to_one and self.brightness == "scaled":
            object.__setattr__(self, "brightness", "none")  # fractions already sum to one



#: library rows per block of the near-duplicate test (bounds its (block, members) temporaries)
_ANGLE_BLOCK = 1024


def _candidates(M: np.ndarray, frac: np.ndarray, min_fraction: float, angle: float
                ) -> tuple[list[int], list[int]]:
    """Library rows to consider, largest mean fraction first, and those of them admitted only
    as the peak of a group of near-duplicates.

    Row ``j`` of ``M (m, L)`` (mean fraction ``frac (m,)``) is a candidate when ``frac_j >=
    min_fraction``, or when it has the largest fraction among the members within ``angle``
    (radians) of it and their fractions sum to at least ``min_fraction``. Only members with a
    positive fraction enter the angles, ``_ANGLE_BLOCK`` rows at a time.
    """
    alone = frac >= min_fraction
    grouped = np.zeros_like(alone)
    live = np.flatnonzero(frac > 0)
    if angle > 0 and live.size > 1:
        S = M[live] / np.maximum(np.linalg.norm(M[live], axis=1, keepdims=True),
                                 np.finfo(float).tiny)
        f = frac[live]
        group_sum, group_max = np.empty(live.size), np.empty(live.size)
        for lo in range(0, live.size, _ANGLE_BLOCK):  # (block, a) at a time: large libraries
            near = np.cos(angle) <= S[lo:lo + _ANGLE_BLOCK] @ S.T  # the diagonal included
            group_sum[lo:lo + _ANGLE_BLOCK] = near @ f
            group_max[lo:lo + _ANGLE_BLOCK] = np.where(near, f[None, :], -np.inf).max(axis=1)
        grouped[live] = (f >= group_max) & (group_sum >= min_fraction) & ~alone[live]
    order = np.argsort(-frac, kind="stable")
    keep = [int(j) for j in order if alone[j] or grouped[j]]
    return keep, [int(j) for j in order if grouped[j]]


def _prune(Y: np.ndarray, M: np.ndarray, keep: list[int], rise: float
           ) -> tuple[list[int], list[dict[str, Any]]]:
    """Backward elimination of library rows ``keep`` of ``M (k, L)`` on pixels ``Y (n, L)``.

    Each round fits the remaining members by least squares (one ``(m, m)`` pseudo-inverse for
    all pixels) and drops the member whose removal raises the mean residual energy per pixel
    (``||y - Mᵀa||²``, units of Y squared) least, while that rise is below ``rise``. The rise
    of dropping member ``j`` is exact for least squares, ``mean(a_j²) / (G⁻¹)_jj`` (the
    partial F statistic; near-duplicate members share their signal, so each alone explains
    little); non-negativity is left out of this test. Returns the kept rows (order kept) and
    one ``{"row", "rise"}`` per dropped member.
    """
    Y = np.asarray(Y, dtype=np.float64)
    keep = list(keep)
    dropped: list[dict[str, Any]] = []
    while len(keep) > 1:
        S = M[keep]
        P = np.linalg.pinv(S @ S.T, hermitian=True)  # (m, m)
        A = (Y @ S.T) @ P  # (n, m) least-squares coefficients
        diag = np.maximum(np.diag(P), np.finfo(float).tiny)
        rises = np.einsum("nj,nj->j", A, A) / Y.shape[0] / diag
        i = int(np.argmin(rises))
        if rises[i] >= rise:
            break
        dropped.append({"row": keep[i], "rise": round(float(rises[i]), 8)})
        keep.pop(i)
    return keep, dropped


class SunsalUnmixer(Unmixer):
    """Sparse unmixing (SUnSAL) against a whole library: :meth:`fit` selects the library
    members present in the scene, the endmembers become those (``selected`` holds their rows
    in the library), and :meth:`abundances` unmixes with them (FCLS by default, or SUnSAL:
    ``abundance`` in :class:`SunsalConfig`).

    The pipeline gives it the whole bundled USGS library by default (``--library``/
    ``--endmembers`` when given), resampled to the scene's bands.
    """

    name = "sunsal"
    description = ("Sparse unmixing by ADMM (SUnSAL) against the whole library; keeps the "
                   "members present in the scene, fractions + per-pixel brightness")
    doi = "10.1109/WHISPERS.2010.5594963"
    Config = SunsalConfig
    #: the pipeline hands this model a whole library (no -k, no extraction)
    selects_from_library: ClassVar[bool] = True

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        super().__init__(config, device)
        #: rows of the fitted library that were kept (largest mean fraction first)
        self.selected: list[int] | None = None
        #: λ in scene units (set by :meth:`fit`)
        self.lam: float | None = None

    @property
    def fits_brightness(self) -> bool:
        """Whether :meth:`abundances_and_brightness` returns a per-pixel brightness."""
        return self.config.brightness == "scaled"

    def fit(self, Y: np.ndarray, M0: np.ndarray) -> None:
        """Select members of the library ``M0 (k, L)`` present in pixels ``Y (N, L)``."""
        cfg = self.config
        Y = np.asarray(Y)
        M0 = np.asarray(M0, dtype=np.float64)
        if Y.shape[0] > cfg.fit_pixels:
            Y = Y[np.linspace(0, Y.shape[0] - 1, cfg.fit_pixels).astype(np.intp)]
        sigma = noise_sigma(Y) if cfg.lam == 0 or cfg.prune else None
        lam = float(cfg.lam) if cfg.lam > 0 else cfg.lam_noise * float(sigma)
        group = lam * np.sqrt(Y.shape[0]) if cfg.collaborative else lam
        A, info = sunsal(Y, M0, group, sum_to_one=cfg.sum_to_one,
                         collaborative=cfg.collaborative, max_iter=cfg.max_iter, tol=cfg.tol)
        tot = A.sum(axis=1)
        live = tot > 0
        frac = (A[live] / tot[live, None]).mean(axis=0) if live.any() else np.zeros(len(M0))
        keep, by_group = _candidates(M0, frac, cfg.min_fraction, cfg.duplicate_angle)
        pruned: list[dict[str, Any]] = []
        keep = keep[: M0.shape[1]]  # least squares needs no more members than bands
        if cfg.prune and len(keep) > 1:
            step = max(1, Y.shape[0] // cfg.prune_pixels)
            keep, pruned = _prune(Y[::step][: cfg.prune_pixels], M0, keep,
                                  cfg.prune_noise * float(sigma) ** 2)
        if cfg.max_endmembers:
            keep = keep[: cfg.max_endmembers]
        if not keep:
            raise EndmemberError(
                f"sparse unmixing kept no library member: the largest mean fraction is "
                f"{float(frac.max(initial=0.0)):.3g}, below min_fraction={cfg.min_fraction:g}; "
                "the library does not explain the scene (check units and bands) or lower "
                "--set min_fraction")
        self.selected = keep
        self.lam = lam
        self.endmembers = M0[keep].astype("float32")
        warnings = []
        if info.converged < info.pixels:
            warnings.append(f"sunsal: {info.pixels - info.converged} of {info.pixels} fit "
                            f"pixels did not converge in max_iter={cfg.max_iter} iterations; "
                            "the selection may change with --set max_iter=...")
        self.fit_info.update({
            "sunsal": {"lambda": lam, "noise_sigma": sigma, "fit_pixels": int(Y.shape[0]),
                       "iterations": info.iterations, "converged_pixels": info.converged,
                       "library_size": len(M0), "selected": keep, "pruned": pruned,
                       "group_candidates": by_group,
                       "library_mean_fraction": [round(float(f), 6) for f in frac]},
            "warnings": list(self.fit_info.get("warnings", [])) + warnings})

    def _raw(self, Y: np.ndarray) -> np.ndarray:
        if self.lam is None:  # a fitted model read back from disk (batch --train-on)
            self.lam = self.fit_info.get("sunsal", {}).get("lambda")
        if self.endmembers is None or self.lam is None:
            raise ConfigError("sunsal: fit the model before computing abundances")
        cfg = self.config
        A, _ = sunsal(Y, self.endmembers, self.lam, sum_to_one=cfg.sum_to_one,
                      max_iter=cfg.max_iter, tol=cfg.tol)
        return A

    def abundances_and_brightness(self, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(A (N, k), s (N,))``: fractions summing to one and the brightness ``s`` (sum of
        the raw abundances) with ``brightness=scaled``; raw abundances and None otherwise.
        Pixels whose raw abundances are all zero (darker than λ) get ``s = 0`` and the FCLS
        fractions, so every finite pixel has finite fractions."""
        if self.config.abundance == "fcls":
            from hsu_geo.unmix.classical.lsq import fcls, scaled_fcls

            if self.endmembers is None:
                raise ConfigError("sunsal: fit the model before computing abundances")
            if self.fits_brightness:
                A, s = scaled_fcls(Y, self.endmembers)
                return A.astype("float32"), s.astype("float32")
            return fcls(Y, self.endmembers).astype("float32"), None
        A = self._raw(Y)
        if not self.fits_brightness:
            return A.astype("float32"), None
        s = A.sum(axis=1)
        zero = ~(s > 0)
        A[~zero] /= s[~zero, None]
        if zero.any():
            from hsu_geo.unmix.classical.lsq import fcls

            M = self.endmembers
            A[zero] = fcls(Y[zero], M) if M.shape[0] <= M.shape[1] else 1.0 / M.shape[0]
            s[zero] = 0.0
        return A.astype("float32"), s.astype("float32")

    def abundances(self, Y: np.ndarray) -> np.ndarray:
        return self.abundances_and_brightness(Y)[0]


__all__ = ["SunsalConfig", "SunsalInfo", "SunsalUnmixer", "noise_sigma", "sunsal"]
