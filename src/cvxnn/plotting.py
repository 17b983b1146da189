"""Pictures of convex-trained networks (matplotlib, imported lazily).

Every function draws on ``ax`` (a matplotlib ``Axes``) or, with ``ax=None``, on a
new figure from ``matplotlib.pyplot.subplots``, and returns the ``Axes`` (its
figure is ``ax.figure``).

* :func:`plot_spline1d`: a 1-D fit (data, fitted piecewise-linear function, knots).
* :func:`plot_decision_regions`: 2-D decision regions, training points and each
  neuron's hyperplane ``w^T x + b = 0``.
* :func:`plot_rectified_ellipsoid`: for ``n = 2`` samples, the ellipse ``X B``, the
  rectified set ``Q_X = {(Xu)_+ : ||u|| <= 1}``, ``-Q_X`` and the convex hull of
  their union (math spec 4.1).
* :func:`plot_convergence`: relative duality gap against time.
* :func:`plot_path`: a regularization path (block norms, active neurons,
  objective, gap and validation score against ``alpha``);
  :func:`plot_path_convergence`: its gaps against cumulative time.
"""

from __future__ import annotations

import numpy as np

from ._data import check_X

__all__ = [
    "plot_spline1d", "plot_decision_regions", "plot_rectified_ellipsoid", "plot_convergence",
    "clip_line", "rectified_hull", "plot_path", "plot_path_convergence", "path_block_norms",
    "path_validation_scores",
]


def _axes(ax, figsize=(6.0, 4.5)):
    if ax is not None:
        if not hasattr(ax, "plot") or not hasattr(ax, "figure"):
            raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _margin_range(lo: float, hi: float, margin: float):
    span = hi - lo
    if not span > 0:
        span = max(abs(lo), 1.0)
    return lo - margin * span, hi + margin * span


def _check_margin(margin):
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    return float(margin)


def _check_count(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ------------------------------------------------------------------- spline
def plot_spline1d(spline, ax=None, *, margin: float = 0.1, n_points: int = 600):
    """Plot a 1-D fit: data points, the fitted function and its knots.

    Parameters
    ----------
    spline : Spline1D
        An object with attributes ``x`` (n,), ``y`` (n,), ``knots`` (K,), ``values``
        (K,) (the function at the knots) and a method ``decision_function(t)`` (or
        ``evaluate(t)``) returning the fitted function on a 1-D array ``t``, as
        returned by ``cvxnn.spline1d``.  With ``classes`` set (logistic fits) the
        labels are drawn at -1 / +1 and the curve is the logit.
    ax : matplotlib Axes, optional
    margin : float, default=0.1
        The curve is drawn on the data range extended by this fraction each side.
    n_points : int, default=600
        Evaluation points of the curve (the knots are added).

    Returns
    -------
    matplotlib Axes
    """
    for attr in ("x", "y", "knots"):
        if not hasattr(spline, attr):
            raise TypeError(f"spline must have an attribute {attr!r} (a cvxnn Spline1D)")
    margin = _check_margin(margin)
    n_points = _check_count(n_points, "n_points", 2)
    evaluate = getattr(spline, "decision_function", None) or getattr(spline, "evaluate", None)
    if evaluate is None:
        raise TypeError("spline must have a decision_function(t) or evaluate(t) method")
    x = np.asarray(spline.x, dtype=np.float64).ravel()
    classes = getattr(spline, "classes", None)
    data_label = "data"
    if classes is not None:  # logistic fit: labels drawn at -1 / +1, the curve is the logit
        yv = np.where(np.asarray(spline.y).ravel() == np.asarray(classes)[1], 1.0, -1.0)
        data_label = f"data ({classes[0]} -> -1, {classes[1]} -> +1)"
    else:
        yv = np.asarray(spline.y, dtype=np.float64)
    if yv.ndim != 1 or yv.shape[0] != x.shape[0]:
        raise ValueError(
            f"spline.y must be 1-D with one value per x ({x.shape[0]}), got {yv.shape}")
    knots = np.asarray(spline.knots, dtype=np.float64).ravel()
    lo, hi = _margin_range(float(x.min()), float(x.max()), margin)
    inside = knots[(knots >= lo) & (knots <= hi)]
    t = np.unique(np.concatenate([np.linspace(lo, hi, n_points), inside]))
    f = np.asarray(evaluate(t), dtype=np.float64).ravel()
    values = getattr(spline, "values", None)
    kv = None if values is None else np.asarray(values, dtype=np.float64).ravel()
    if kv is None or kv.shape != knots.shape:
        kv = np.asarray(evaluate(knots), dtype=np.float64).ravel() if knots.size else knots
    ax = _axes(ax)
    ax.plot(t, f, color="C0", lw=2, label="fitted spline", zorder=2)
    ax.scatter(x, yv, color="k", s=18, label=data_label, zorder=3)
    if knots.size:
        ax.scatter(knots, kv, marker="D", s=42, facecolor="none", edgecolor="C3", lw=1.5,
                   label=f"knots ({knots.size})", zorder=4)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.legend(loc="best", fontsize="small")
    return ax


# ----------------------------------------------------------- decision regions
def clip_line(w, b, xlim, ylim):
    """Segment of the line ``w[0] x + w[1] y + b = 0`` inside a rectangle.

    Parameters
    ----------
    w : array of shape (2,)
    b : float
    xlim, ylim : (float, float)

    Returns
    -------
    ndarray of shape (2, 2) (two end points, rows) or None when the line misses
    the rectangle (or ``w = 0``).
    """
    w = np.asarray(w, dtype=np.float64)
    (x0, x1), (y0, y1) = xlim, ylim
    pts = []
    if w[1] != 0:
        for xe in (x0, x1):
            ye = -(b + w[0] * xe) / w[1]
            if y0 <= ye <= y1:
                pts.append((xe, ye))
    if w[0] != 0:
        for ye in (y0, y1):
            xe = -(b + w[1] * ye) / w[0]
            if x0 <= xe <= x1:
                pts.append((xe, ye))
    if len(pts) < 2:
        return None
    pts = np.unique(np.round(np.asarray(pts), 12), axis=0)
    if pts.shape[0] < 2:
        return None
    # the two points farthest apart (a corner can appear twice)
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    i, j = np.unravel_index(np.argmax(dist), dist.shape)
    return pts[[i, j]]


def plot_decision_regions(network, X, y, ax=None, show_neurons: bool = True, *,
                          resolution: int = 300, margin: float = 0.1):
    """Decision regions of a network on 2-D inputs, with its neurons' hyperplanes.

    Parameters
    ----------
    network : TwoLayerReLU
        Two input features.  One output: regions ``f > 0`` and ``f <= 0``
        (classifiers) or the sign of the output (regression); several outputs:
        ``argmax``.
    X : array-like of shape (n, 2)
        Training inputs, drawn as points.
    y : array-like of shape (n,)
        Labels (colours of the points); regression targets are drawn by sign.
    ax : matplotlib Axes, optional
    show_neurons : bool, default=True
        Draw each unit's line ``w_j^T x + b_j = 0`` clipped to the axes (for a
        gated network the gate lines ``g_j^T [x, 1] = 0``, where its units switch).
    resolution : int, default=300
        Grid points per axis.
    margin : float, default=0.1

    Returns
    -------
    matplotlib Axes
    """
    from matplotlib.colors import ListedColormap

    X = check_X(X, "X").astype(np.float64, copy=False)
    if X.shape[1] != 2:
        raise ValueError(f"plot_decision_regions needs 2 input features, X has {X.shape[1]}")
    if getattr(network, "n_features_in", None) != 2:
        raise ValueError("network must be a cvxnn network with 2 input features")
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must be 1-D with one label per row of X ({X.shape[0]}), got {y.shape}")
    resolution = _check_count(resolution, "resolution", 2)
    margin = _check_margin(margin)
    xlim = _margin_range(float(X[:, 0].min()), float(X[:, 0].max()), margin)
    ylim = _margin_range(float(X[:, 1].min()), float(X[:, 1].max()), margin)
    gx, gy = np.meshgrid(np.linspace(*xlim, resolution), np.linspace(*ylim, resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    F = np.asarray(network.forward(grid), dtype=np.float64)
    classes = getattr(network, "classes", None)
    if F.shape[1] == 1:
        region = (F[:, 0] > 0).astype(int)
        K = 2
    else:
        region = np.argmax(F, axis=1)
        K = F.shape[1]
    palette = [f"C{k % 10}" for k in range(K)]
    ax = _axes(ax)
    ax.contourf(gx, gy, region.reshape(gx.shape), levels=np.arange(K + 1) - 0.5,
                cmap=ListedColormap(palette), alpha=0.25)
    if F.shape[1] == 1:
        ax.contour(gx, gy, F[:, 0].reshape(gx.shape), levels=[0.0], colors="k", linewidths=1.5)
    # training points coloured by class
    if classes is not None:
        lookup = {c: i for i, c in enumerate(np.asarray(classes).tolist())}
        idx = np.array([lookup.get(v, -1) for v in y.tolist()])
        names = [str(c) for c in np.asarray(classes).tolist()]
    elif y.dtype.kind in "iuf" and F.shape[1] == 1:
        idx = (y > 0).astype(int)
        names = ["y <= 0", "y > 0"]
    else:
        names_u, idx = np.unique(y, return_inverse=True)
        names = [str(c) for c in names_u]
    for k in np.unique(idx):
        sel = idx == k
        label = names[k] if 0 <= k < len(names) else "other"
        ax.scatter(X[sel, 0], X[sel, 1], s=22, color=palette[k % len(palette)] if k >= 0 else "k",
                   edgecolor="k", linewidths=0.5, label=label, zorder=3)
    if show_neurons:
        gates = getattr(network, "gates", None)
        if gates is not None:  # gated units switch on their gate's hyperplane
            G = np.asarray(gates, dtype=np.float64)
            W1 = G[:, :2]
            b1 = G[:, 2] if G.shape[1] > 2 else np.zeros(G.shape[0])
            what = "gates"
        else:
            W1 = np.asarray(network.W1, dtype=np.float64)
            b1 = (np.zeros(W1.shape[0]) if network.b1 is None
                  else np.asarray(network.b1, dtype=np.float64))
            what = "neurons"
        first = True
        for w, b in zip(W1, b1):
            seg = clip_line(w, b, xlim, ylim)
            if seg is None:
                continue
            ax.plot(seg[:, 0], seg[:, 1], ls="--", lw=0.9, color="0.35", zorder=2,
                    label=f"{what} ({W1.shape[0]})" if first else None)
            first = False
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.legend(loc="best", fontsize="small")
    return ax


# ------------------------------------------------------ rectified ellipsoid
def _ellipse_boundary(X: np.ndarray, n_points: int) -> np.ndarray:
    """Boundary of ``X B = (X X^T)^{1/2} B_2``, shape (n_points, 2)."""
    evals, evecs = np.linalg.eigh(X @ X.T)
    root = (evecs * np.sqrt(np.maximum(evals, 0.0))) @ evecs.T
    t = np.linspace(0.0, 2.0 * np.pi, n_points, endpoint=False)
    return np.column_stack([np.cos(t), np.sin(t)]) @ root.T


def rectified_hull(X, n_points: int = 720):
    """Sampled ``Q_X``, ``-Q_X`` and the convex hull of their union (``n = 2``).

    Returns ``(ellipse, Q, hull)`` with the ellipse boundary (n_points, 2), the
    rectified boundary curve ``(E)_+`` (n_points, 2) (its region is ``Q_X``) and a
    ``scipy.spatial.ConvexHull`` of ``Q ∪ -Q ∪ {0}``.
    """
    from scipy.spatial import ConvexHull

    E = _ellipse_boundary(X, n_points)
    Q = np.maximum(E, 0.0)
    pts = np.vstack([Q, -Q, np.zeros((1, 2))])
    return E, Q, ConvexHull(pts)


def plot_rectified_ellipsoid(X, ax=None, n_points: int = 720, *, y=None):
    """The rectified ellipsoid of a two-sample data matrix (math spec 4.1).

    Draws the ellipse ``X B`` (``B`` the unit ball of ``R^d``), the rectified set
    ``Q_X = {(Xu)_+ : ||u|| <= 1}``, its reflection ``-Q_X``, the convex hull ``C``
    of ``Q_X ∪ -Q_X`` and its corners (extreme points where the sampled hull turns
    by more than 3 degrees; every point of a curved part of the hull boundary is an
    extreme point too).  With ``y``, also the
    target and ``y / p*`` where ``p* = gauge_C(y)`` is the minimum-norm
    interpolation cost (``sum_j |alpha_j|`` with unit neurons, without bias).

    Parameters
    ----------
    X : array-like of shape (2, d)
        Two samples (rows).  No bias column is added; append one yourself.
    ax : matplotlib Axes, optional
    n_points : int, default=720
        Points on the ellipse boundary.
    y : array-like of shape (2,), optional

    Returns
    -------
    matplotlib Axes
    """
    X = check_X(X, "X").astype(np.float64, copy=False)
    if X.shape[0] != 2:
        raise ValueError(f"plot_rectified_ellipsoid needs n = 2 samples (rows), X has {X.shape[0]}")
    n_points = _check_count(n_points, "n_points", 8)
    if not np.any(X):
        raise ValueError("X is zero: the ellipse X B is a point")
    E, Q, hull = rectified_hull(X, n_points)
    ax = _axes(ax, figsize=(5.5, 5.5))
    close = lambda P: np.vstack([P, P[:1]])  # noqa: E731
    ax.fill(*close(E).T, color="0.85", alpha=0.6, zorder=1)
    ax.plot(*close(E).T, color="0.45", lw=1, label="ellipse X B", zorder=2)
    ax.fill(*close(Q).T, color="C0", alpha=0.35, zorder=3)
    ax.plot(*close(Q).T, color="C0", lw=2, label="Q_X = (X B)_+", zorder=4)
    ax.fill(*close(-Q).T, color="C3", alpha=0.35, zorder=3)
    ax.plot(*close(-Q).T, color="C3", lw=2, label="-Q_X", zorder=4)
    V = hull.points[hull.vertices]  # counter-clockwise in 2-D
    ax.plot(*close(V).T, color="k", lw=1.2, ls="--", label="conv(Q_X ∪ -Q_X)", zorder=5)
    prev, nxt = np.roll(V, 1, axis=0), np.roll(V, -1, axis=0)
    a, b = V - prev, nxt - V
    turn = np.abs(np.arctan2(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0], np.einsum("ij,ij->i", a, b)))
    corners = V[turn > np.deg2rad(3.0)]
    if corners.size:
        ax.scatter(corners[:, 0], corners[:, 1], s=40, color="k", zorder=7,
                   label="extreme points (corners)")
    if y is not None:
        yv = np.asarray(y, dtype=np.float64).ravel()
        if yv.shape != (2,):
            raise ValueError(f"y must have 2 entries (one per sample), got shape {yv.shape}")
        # facets: normal . p + offset <= 0 inside; gauge(y) = max normal . y / (-offset)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = hull.equations[:, :2] @ yv / -hull.equations[:, 2]
        gauge = float(np.max(g[np.isfinite(g)], initial=0.0))
        ax.scatter(*yv, marker="*", s=120, color="C2", zorder=8, label="y")
        if gauge > 0:
            ax.scatter(*(yv / gauge), marker="o", s=50, facecolor="none", edgecolor="C2",
                       zorder=8, label=f"y / p*  (p* = {gauge:.3g})")
    ax.axhline(0.0, color="0.6", lw=0.6, zorder=0)
    ax.axvline(0.0, color="0.6", lw=0.6, zorder=0)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("sample 1")
    ax.set_ylabel("sample 2")
    ax.legend(loc="best", fontsize="x-small")
    return ax


# ----------------------------------------------------------------- convergence
def plot_convergence(result, ax=None, *, x: str = "time"):
    """Relative duality gap (and relu constraint violation) along a solve.

    Parameters
    ----------
    result : SolveResult
        Its ``history`` holds ``(iteration, seconds, relative_gap, objective,
        violation)`` tuples (empty for the cvxpy solvers).
    ax : matplotlib Axes, optional
    x : {"time", "iteration"}, default="time"

    Returns
    -------
    matplotlib Axes
    """
    if x not in ("time", "iteration"):
        raise ValueError(f"x must be 'time' or 'iteration', got {x!r}")
    hist = getattr(result, "history", None)
    if hist is None:
        raise TypeError(f"result must be a cvxnn.SolveResult, got {type(result).__name__}")
    if len(hist) == 0:
        raise ValueError(
            "result.history is empty (the cvxpy/clarabel reference solvers record no "
            "convergence trace); solve with a native solver"
        )
    H = np.asarray([tuple(h)[:5] for h in hist], dtype=np.float64)
    xs = H[:, 1] if x == "time" else H[:, 0]
    floor = 1e-17
    gap = H[:, 2]
    ok = np.isfinite(gap)
    ax = _axes(ax)
    # the gap is only known at the recorded certificates: hold it until the next one
    ax.semilogy(xs[ok], np.maximum(gap[ok], floor), marker="o", ms=3, lw=1.5, color="C0",
                drawstyle="steps-post", label="relative duality gap")
    viol = H[:, 4]
    if np.any(viol[np.isfinite(viol)] > 1e-14):  # rounding-level violations are not drawn
        okv = np.isfinite(viol)
        ax.semilogy(xs[okv], np.maximum(viol[okv], floor), ls="--", lw=1.2, color="C1",
                    drawstyle="steps-post", label="constraint violation")
    tol_line = getattr(result, "relative_gap", None)
    if tol_line is not None and np.isfinite(tol_line) and tol_line > 0:
        ax.axhline(tol_line, color="0.5", lw=0.8, ls=":", label=f"final gap {tol_line:.1e}")
    ax.set_xlabel("seconds" if x == "time" else "iteration")
    ax.set_ylabel("relative gap")
    ax.set_title(f"{getattr(result, 'formulation', '')} / {getattr(result, 'solver', '')}")
    ax.legend(loc="best", fontsize="small")
    return ax


# ---------------------------------------------------------- regularization path
def _check_path_result(path_result):
    for attr in ("alphas", "objectives", "gaps", "n_active", "results", "times"):
        if not hasattr(path_result, attr):
            raise TypeError(f"path_result must be a cvxnn.PathResult (no attribute {attr!r}), "
                            f"got {type(path_result).__name__}")
    alphas = np.asarray(path_result.alphas, dtype=np.float64).ravel()
    if alphas.size < 1:
        raise ValueError("path_result has no alphas")
    if len(path_result.results) != alphas.size:
        raise ValueError(f"path_result has {alphas.size} alphas but "
                         f"{len(path_result.results)} results")
    return alphas


def path_block_norms(path_result):
    """Group norms of every block of the convex weights along a path.

    A block is one column ``weights[key][:, i, k]`` (pattern ``i``, output ``k``)
    of each weight array of the results (``"U"`` for the gated program, ``"V"``
    and ``"W"`` for the relu program): the groups of the penalty
    ``alpha sum ||block||``.

    Parameters
    ----------
    path_result : PathResult

    Returns
    -------
    norms : ndarray of shape (n_alphas, n_blocks)
    names : list of str
        ``"U[i,k]"`` (or ``"V[i,k]"``, ``"W[i,k]"``) per column.
    """
    _check_path_result(path_result)
    rows, names = [], None
    for r in path_result.results:
        weights = getattr(r, "weights", None)
        if not isinstance(weights, dict) or not weights:
            raise TypeError("every path_result.results[j] must have a weights dict")
        parts, labels = [], []
        for key in sorted(weights):
            A = np.asarray(weights[key], dtype=np.float64)
            if A.ndim < 2:
                raise ValueError(f"weights[{key!r}] must have a block axis, got shape {A.shape}")
            norms = np.sqrt(np.einsum("i...,i...->...", A, A))  # reduce axis 0
            parts.append(norms.ravel())
            labels += [f"{key}[{','.join(map(str, ix))}]" for ix in np.ndindex(*norms.shape)]
        if names is None:
            names = labels
        elif labels != names:
            raise ValueError("the results of path_result have different block layouts")
        rows.append(np.concatenate(parts))
    return np.vstack(rows), names


def _r2(y, p):
    """Coefficient of determination, averaged over outputs (NaN for a constant target)."""
    y = y.reshape(y.shape[0], -1)
    p = p.reshape(p.shape[0], -1)
    if p.shape != y.shape:
        raise ValueError(f"y_val has {y.shape[1]} output(s), the networks predict {p.shape[1]}")
    ss_res = np.sum((y - p) ** 2, axis=0)
    ss_tot = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
    return float(np.mean(r2))


def path_validation_scores(path_result, X_val, y_val):
    """Validation score of every network of a path.

    Accuracy ``mean(predict(X_val) == y_val)`` for classifiers (networks with
    ``classes``), otherwise ``R^2 = 1 - sum (y - f)^2 / sum (y - mean y)^2``
    (averaged over outputs; NaN when ``y_val`` is constant).  ``X_val`` must be
    in the units the path was solved in (e.g. standardized the same way).

    Parameters
    ----------
    path_result : PathResult
    X_val : array-like of shape (n_val, n_features)
    y_val : array-like of shape (n_val,) or (n_val, n_outputs)

    Returns
    -------
    scores : ndarray of shape (n_alphas,)
    kind : {"accuracy", "r2"}
    """
    _check_path_result(path_result)
    X_val = check_X(X_val, "X_val").astype(np.float64, copy=False)
    y_val = np.asarray(y_val)
    if y_val.ndim not in (1, 2) or y_val.shape[0] != X_val.shape[0]:
        raise ValueError(f"y_val must have one row per row of X_val ({X_val.shape[0]}), "
                         f"got shape {y_val.shape}")
    nets = [getattr(r, "network", None) for r in path_result.results]
    if any(net is None or not hasattr(net, "predict") for net in nets):
        raise TypeError("every path_result.results[j] must have a network with predict()")
    d = getattr(nets[0], "n_features_in", X_val.shape[1])
    if X_val.shape[1] != d:
        raise ValueError(f"X_val has {X_val.shape[1]} features, the networks take {d}")
    classifier = getattr(nets[0], "classes", None) is not None
    scores = np.empty(len(nets))
    if classifier:
        if y_val.ndim != 1:
            raise ValueError(f"y_val must be 1-D class labels for a classifier, got {y_val.shape}")
        for j, net in enumerate(nets):
            pred = np.asarray(net.predict(X_val))
            scores[j] = float(np.mean(pred == y_val))
        return scores, "accuracy"
    if y_val.dtype.kind not in "biuf":
        raise ValueError(f"y_val must be numeric for regression, got dtype {y_val.dtype}")
    yv = y_val.astype(np.float64)
    for j, net in enumerate(nets):
        scores[j] = _r2(yv, np.asarray(net.predict(X_val), dtype=np.float64))
    return scores, "r2"


_PATH_PANELS = ("norms", "active", "scores")


def _alpha_axis(ax, alphas):
    """Log alpha axis (symlog when a grid point is 0), decreasing from left to right."""
    if np.all(alphas > 0):
        ax.set_xscale("log")
    else:
        pos = alphas[alphas > 0]
        ax.set_xscale("symlog", linthresh=float(pos.min()) if pos.size else 1.0)
    hi, lo = float(alphas.max()), float(alphas.min())
    if hi > lo:
        ax.set_xlim(hi, lo)  # alpha decreases to the right (as in lasso path plots)
    elif not ax.xaxis_inverted():
        ax.invert_xaxis()


def plot_path(path_result, *, X_val=None, y_val=None, axes=None, what=_PATH_PANELS):
    """Regularization path: block norms, active neurons and scores against ``alpha``.

    ``alpha`` is drawn on a log axis that *decreases from left to right* (as in
    scikit-learn's lasso path plots): the network grows from the zero network at
    ``alpha_max`` (left) to the least regularized point (right).

    Panels (in the order of ``what``):

    ``"norms"``
        the group norm ``||block||`` of every block of the convex weights (see
        :func:`path_block_norms`), one line per block that is non-zero at some
        point of the path (the line's label and gid are the block's name);
    ``"active"``
        the number of active (non-zero) blocks ``path_result.n_active``;
    ``"scores"``
        the training objective ``L + alpha * sum ||block||`` (left axis), the
        relative duality gap (right, log axis; exact zeros are not drawn) and,
        with ``X_val, y_val``, the
        validation accuracy (classifiers) or ``R^2`` (regression) of each
        point's network (second right axis), see :func:`path_validation_scores`.

    Parameters
    ----------
    path_result : PathResult
        As returned by :func:`cvxnn.path`.
    X_val : array-like of shape (n_val, n_features), optional
    y_val : array-like of shape (n_val,) or (n_val, n_outputs), optional
        Validation data in the units the path was solved in; both or neither.
    axes : sequence of matplotlib Axes, optional
        One per panel; default: a new ``pyplot`` figure with the panels stacked
        and sharing the alpha axis.
    what : sequence of {"norms", "active", "scores"}, default: all three

    Returns
    -------
    ndarray of matplotlib Axes, shape (len(what),)
    """
    alphas = _check_path_result(path_result)
    if isinstance(what, str):
        what = (what,)
    what = tuple(what)
    if not what or any(w not in _PATH_PANELS for w in what) or len(set(what)) != len(what):
        raise ValueError(f"what must be a non-empty sequence of distinct entries of "
                         f"{list(_PATH_PANELS)}, got {what!r}")
    if (X_val is None) != (y_val is None):
        raise ValueError("pass both X_val and y_val, or neither")
    if axes is None:
        import matplotlib.pyplot as plt

        fig, axs = plt.subplots(len(what), 1, sharex=True, squeeze=False,
                                figsize=(7.5, 2.6 * len(what) + 0.6))
        axes = axs[:, 0]
        fig.subplots_adjust(left=0.1, right=0.8 if X_val is not None else 0.88, top=0.94,
                            bottom=0.08, hspace=0.15)
    else:
        if hasattr(axes, "plot"):
            axes = [axes]
        axes = list(np.asarray(axes, dtype=object).ravel())
        if len(axes) != len(what):
            raise ValueError(f"axes must hold one Axes per panel ({len(what)}), got {len(axes)}")
        for a in axes:
            _axes(a)
    scores = kind = None
    if X_val is not None and "scores" in what:
        scores, kind = path_validation_scores(path_result, X_val, y_val)
    for ax, panel in zip(axes, what):
        if panel == "norms":
            _path_norms(ax, path_result, alphas)
        elif panel == "active":
            _path_active(ax, path_result, alphas)
        else:
            _path_scores(ax, path_result, alphas, scores, kind)
        _alpha_axis(ax, alphas)
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes:
        ax.set_xlabel("alpha (decreasing)" if ax is axes[-1] else "")
    form = getattr(path_result, "formulation", "")
    loss = getattr(path_result, "loss", "")
    axes[0].set_title(f"regularization path ({form}, {loss} loss, {alphas.size} alphas)",
                      fontsize="medium")
    return np.asarray(axes, dtype=object)


def _path_norms(ax, path_result, alphas):
    N, names = path_block_norms(path_result)
    used = np.flatnonzero(np.any(N > 0, axis=0))
    for j in used:
        (line,) = ax.plot(alphas, N[:, j], lw=1.0, marker=".", ms=3, label=names[j])
        line.set_gid(names[j])
    ax.set_ylabel("block norm")
    ax.text(0.01, 0.97, f"{used.size} of {N.shape[1]} blocks non-zero somewhere",
            transform=ax.transAxes, va="top", ha="left", fontsize="small")


def _path_active(ax, path_result, alphas):
    n_active = np.asarray(path_result.n_active, dtype=np.float64)
    from matplotlib.ticker import MaxNLocator

    ax.plot(alphas, n_active, color="C1", marker="o", ms=4, lw=1.5, label="active neurons")
    ax.set_ylabel("active neurons")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _path_scores(ax, path_result, alphas, scores, kind):
    objectives = np.asarray(path_result.objectives, dtype=np.float64)
    gaps = np.asarray(path_result.gaps, dtype=np.float64)
    lines = ax.plot(alphas, objectives, color="C0", marker="o", ms=3, lw=1.5,
                    label="training objective")
    ax.set_ylabel("objective", color="C0")
    gax = ax.twinx()
    # exact zero gaps (the zero network at alpha >= alpha_max) have no place on a log axis
    lines += gax.semilogy(alphas, np.where(np.isfinite(gaps) & (gaps > 0), gaps, np.nan),
                          color="C3", ls="--", marker="x", ms=4, lw=1.0,
                          label="relative duality gap")
    gax.set_ylabel("relative gap", color="C3")
    top = gax
    if scores is not None:
        sax = ax.twinx()
        sax.spines["right"].set_position(("axes", 1.13))
        top = sax
        name = "validation accuracy" if kind == "accuracy" else "validation R^2"
        lines += sax.plot(alphas, scores, color="C2", marker="s", ms=3, lw=1.5, label=name)
        sax.set_ylabel(name, color="C2")
        if np.any(np.isfinite(scores)):
            best = int(np.nanargmax(scores))
            lines.append(ax.axvline(alphas[best], color="C2", lw=0.8, ls=":",
                                    label=f"best validation (alpha={alphas[best]:.3g})"))
    # on the top-most twin, so that no line is drawn over the legend
    top.legend(lines, [ln.get_label() for ln in lines], loc="best", fontsize="small",
               framealpha=0.9)


def plot_path_convergence(path_result, ax=None):
    """Cost of a path: relative duality gap of each point against cumulative time.

    Every point is drawn at the cumulative wall-clock time at which it was
    finished (``cumsum(path_result.times)``), at its certified relative gap
    (points with an exact zero gap as ticks on the bottom edge);
    where a point's solver recorded a trace (``result.history``), the trace is
    drawn too, shifted by the time at which that point started.

    Parameters
    ----------
    path_result : PathResult
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    alphas = _check_path_result(path_result)
    times = np.asarray(path_result.times, dtype=np.float64).ravel()
    gaps = np.asarray(path_result.gaps, dtype=np.float64).ravel()
    if times.shape != alphas.shape or gaps.shape != alphas.shape:
        raise ValueError("path_result.times and .gaps must have one entry per alpha")
    ends = np.cumsum(times)
    starts = ends - times
    floor = 1e-17
    ax = _axes(ax)
    first = True
    for r, t0 in zip(path_result.results, starts):
        hist = getattr(r, "history", None) or []
        if not len(hist):
            continue
        H = np.asarray([tuple(h)[:3] for h in hist], dtype=np.float64)
        ok = np.isfinite(H[:, 2])
        if not ok.any():
            continue
        ax.semilogy(t0 + H[ok, 1], np.maximum(H[ok, 2], floor), color="0.6", lw=0.8,
                    drawstyle="steps-post", label="solver traces" if first else None)
        first = False
    # exact zero gaps (the zero network) have no place on a log axis: drawn as a tick
    # at the bottom of the axes
    ax.semilogy(ends, np.where(np.isfinite(gaps) & (gaps > 0), gaps, np.nan),
                color="C0", marker="o", ms=4, lw=0, label="path points (final gap)")
    zero = np.flatnonzero(gaps == 0)
    if zero.size:
        ax.plot(ends[zero], np.zeros(zero.size), ls="none", marker="|", ms=12, color="C0",
                transform=ax.get_xaxis_transform(), label="path points with gap 0")
    ax.set_xlabel("cumulative seconds")
    ax.set_ylabel("relative gap")
    ax.set_title(f"{getattr(path_result, 'formulation', '')} path: {alphas.size} points, "
                 f"{float(ends[-1]):.2f} s", fontsize="medium")
    ax.legend(loc="best", fontsize="small")
    return ax
