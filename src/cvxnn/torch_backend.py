"""PyTorch backend of the gated ReLU program (CPU or CUDA), behind the numpy interface.

:class:`TorchGatedProblem` has the interface of
:class:`cvxnn.problems.GatedReLUProblem` that the FISTA solver uses
(``apply``, ``adjoint``, ``smooth_value``, ``smooth_value_and_gradient``,
``penalty``, ``prox``, ``objective``, ``gap``, ``zeros``, ``asweights``,
``to_numpy``), with the weights ``U`` of shape ``(d, P, c)`` held as a torch
tensor on ``device``.  Only the two heavy products run in torch:

* ``apply(U)``: ``Z[:, k] = sum_i D_i Xa U[:, i, k]`` as one GEMM ``Xa @ U`` per row
  chunk followed by the mask and a reduction over patterns;
* ``adjoint(R)``: ``G[:, i, k] = Xa^T (D_i R[:, k])`` as one GEMM per row chunk.

Predictions ``Z`` (shape ``(n, c)``) come back to the host as float64 numpy
arrays, where the loss, its gradient and the duality-gap certificate are
evaluated exactly as in the numpy backend; the transfer is ``n * c`` numbers per
product, negligible next to the ``n * d * P * c`` GEMM.  Masks are stored on the
device as ``uint8`` (one byte per entry) and converted one chunk at a time.

torch is imported lazily; install it with ``pip install "cvxnn[torch]"``.
"""

from __future__ import annotations

import numpy as np

from .losses import get_loss
from .problems import _GatedCertificates

__all__ = ["TorchGatedProblem", "import_torch", "resolve_device"]


def import_torch():
    """Import torch or raise an ImportError that says how to install it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "device=... needs PyTorch; install it with `pip install torch==2.13.0` "
            "or `pip install \"cvxnn[torch]\"`"
        ) from exc
    return torch


def resolve_device(device):
    """Return a ``torch.device`` for ``device`` (a string or torch.device), checking availability."""
    torch = import_torch()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available to torch")
    return dev


_TORCH_DTYPES = {"float32": "float32", "float64": "float64"}


class TorchGatedProblem(_GatedCertificates):
    """The gated ReLU group lasso with torch products (see module docstring).

    Parameters
    ----------
    Xa : ndarray of shape (n, d)
    D : ndarray of shape (n, P), bool or uint8
    Y : ndarray of shape (n, c), encoded targets (kept on the host, float64)
    loss : str or Loss
    alpha : float
    device : str or torch.device, default="cpu"
    dtype : {"float64", "float32"}, default="float64"
        Precision of the products (GEMM operands); the weights ``U`` stay float64
        on the device (mixed precision).
    chunk_elements : int, optional
        Bound on the number of entries of one temporary ``rows x P x c``
        (default ``2**22`` on CPU, ``2**27`` on CUDA).
    """

    def __init__(self, Xa, D, Y, loss, alpha, *, device="cpu", dtype="float64", chunk_elements=None):
        torch = import_torch()
        self.torch = torch
        if dtype not in _TORCH_DTYPES:
            raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
        self.device = resolve_device(device)
        self.tdtype = getattr(torch, _TORCH_DTYPES[dtype])
        self.dtype = np.dtype(dtype)
        self.Xt = torch.as_tensor(np.ascontiguousarray(Xa), device=self.device).to(self.tdtype)
        self.Dt = torch.as_tensor(np.ascontiguousarray(D, dtype=np.uint8), device=self.device)
        self.Y = np.asarray(Y, dtype=np.float64)
        self.loss = get_loss(loss)
        self.alpha = float(alpha)
        n, d = Xa.shape
        self.n_samples = n
        self.shape = (d, D.shape[1], self.Y.shape[1])
        if chunk_elements is None:
            chunk_elements = (1 << 27) if self.device.type == "cuda" else (1 << 22)
        width = self.shape[1] * self.shape[2]
        self._rows = max(1, min(n, int(chunk_elements) // max(width, 1)))

    # ------------------------------------------------------------------ weights
    # weights stay float64 on the device; only the GEMM operands use ``dtype``
    def zeros(self):
        return self.torch.zeros(self.shape, dtype=self.torch.float64, device=self.device)

    def asweights(self, U):
        if isinstance(U, self.torch.Tensor):
            U = U.detach().to(device=self.device, dtype=self.torch.float64).clone()
        else:
            U = self.torch.as_tensor(np.array(U, dtype=np.float64), device=self.device)
        if tuple(U.shape) != self.shape:
            raise ValueError(f"warm-start weights must have shape {self.shape}, got {tuple(U.shape)}")
        return U

    def to_numpy(self, U):
        return U.detach().to("cpu", self.torch.float64).numpy()

    # ------------------------------------------------------------------ products
    def _chunks(self):
        n = self.n_samples
        for start in range(0, n, self._rows):
            yield slice(start, min(n, start + self._rows))

    def apply(self, U):
        """Predictions ``Z`` of shape ``(n, c)`` as a float64 numpy array."""
        torch = self.torch
        d, P, c = self.shape
        U2 = U.reshape(d, P * c).to(self.tdtype)
        Z = torch.empty((self.n_samples, c), dtype=self.tdtype, device=self.device)
        with torch.no_grad():
            for sl in self._chunks():
                XU = (self.Xt[sl] @ U2).view(-1, P, c)
                Z[sl] = torch.einsum("jpc,jp->jc", XU, self.Dt[sl].to(self.tdtype))
        return Z.to("cpu", torch.float64).numpy()

    def adjoint(self, R):
        """``G[:, i, k] = Xa^T (D_i R[:, k])``, a tensor of shape ``(d, P, c)``."""
        torch = self.torch
        d, P, c = self.shape
        Rt = torch.as_tensor(np.ascontiguousarray(R), device=self.device).to(self.tdtype)
        G = None
        with torch.no_grad():
            for sl in self._chunks():
                M = self.Dt[sl].to(self.tdtype)[:, :, None] * Rt[sl][:, None, :]
                part = self.Xt[sl].T @ M.reshape(-1, P * c)
                G = part if G is None else G.add_(part)
        return G.view(d, P, c)

    # ------------------------------------------------------------------ objective
    def smooth_value(self, Z):
        return self.loss.value(Z, self.Y)

    def smooth_value_and_gradient(self, Z):
        return self.loss.value_and_gradient(Z, self.Y)

    def group_norms(self, U):
        return self.torch.linalg.vector_norm(U, dim=0)

    def penalty(self, U):
        return self.alpha * float(self.group_norms(U).double().sum())

    def prox(self, U, step):
        torch = self.torch
        norms = self.group_norms(U)
        thresh = step * self.alpha
        scale = torch.clamp(1.0 - thresh / torch.clamp(norms, min=1e-300), min=0.0)
        scale = torch.where(norms > thresh, scale, torch.zeros_like(scale))
        return U * scale

    def objective(self, U, Z=None):
        if Z is None:
            Z = self.apply(U)
        return self.smooth_value(Z) + self.penalty(U)

    def dual_norms(self, Theta):
        """Block norms ``||Xa^T D_i Theta_k||`` as a float64 numpy array of shape ``(P, c)``."""
        return self.group_norms(self.adjoint(Theta)).to("cpu", self.torch.float64).numpy()

    # ------------------------------------------------------------------ pattern subsets
    def restrict(self, idx):
        """The same program on the patterns ``idx`` (shares the device copy of ``Xa``)."""
        sub = object.__new__(TorchGatedProblem)
        sub.__dict__.update(self.__dict__)
        sub.Dt = self.Dt[:, self._index(idx)].contiguous()
        sub.shape = (self.shape[0], int(sub.Dt.shape[1]), self.shape[2])
        width = max(sub.shape[1] * sub.shape[2], 1)
        sub._rows = max(1, min(self.n_samples, self._rows * self.shape[1] * self.shape[2] // width))
        return sub

    def _index(self, idx):
        return self.torch.as_tensor(np.asarray(idx, dtype=np.int64), device=self.device)

    def take(self, U, idx):
        return U[:, self._index(idx)]

    def embed(self, U_sub, idx, n_patterns):
        U = self.torch.zeros((U_sub.shape[0], n_patterns, U_sub.shape[2]), dtype=U_sub.dtype,
                             device=self.device)
        U[:, self._index(idx)] = U_sub
        return U

    def block_frobenius(self):
        """``||D_i Xa||_F`` per pattern, a float64 numpy array of shape ``(P,)``."""
        row_sq = (self.Xt.double() ** 2).sum(dim=1)
        return self.torch.sqrt(row_sq @ self.Dt.double()).cpu().numpy()
