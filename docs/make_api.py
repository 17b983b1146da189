"""Generate the API reference (docs/api.md) from cvxnn's docstrings.

Usage::

    python docs/make_api.py            # writes docs/api.md
    python docs/make_api.py --check    # exit 1 if docs/api.md is out of date

Every public name (``cvxnn.__all__`` and the ``__all__`` of the public submodules
listed in ``MODULES``) gets its signature and its full docstring; classes also list
their public methods and properties.  Only the standard library and cvxnn are needed.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

#: public submodules documented after the top-level names (optional ones are skipped
#: when their dependencies are missing)
MODULES = [
    "cvxnn.path", "cvxnn.estimators_cv", "cvxnn.closed_form", "cvxnn.spline1d",
    "cvxnn.interpret", "cvxnn.plotting", "cvxnn.linear", "cvxnn.cnn", "cvxnn.memory", "cvxnn.distributed",
    "cvxnn.oracle", "cvxnn.search", "cvxnn.certify", "cvxnn.cone_decomposition",
    "cvxnn.patterns", "cvxnn.losses", "cvxnn.dual_refine",
]

HEADER = """# cvxnn API reference

Generated from the docstrings by `python docs/make_api.py`; do not edit by hand.
Objective conventions are stated once in `cvxnn.solve`.

"""


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _doc(obj) -> str:
    doc = inspect.getdoc(obj) or "(no docstring)"
    return doc.strip()


def _members(cls):
    out = []
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") and name != "__call__":
            continue
        if name not in cls.__dict__:          # inherited from a base outside the class
            continue
        if isinstance(member, property) or isinstance(cls.__dict__.get(name), property):
            out.append((name, "property", cls.__dict__[name]))
        elif inspect.isfunction(member) or inspect.ismethod(member):
            out.append((name, "method", member))
    return out


def _render(qualname: str, obj) -> str:
    lines = []
    if inspect.isclass(obj):
        lines.append(f"### class `{qualname}{_signature(obj)}`\n")
        lines.append(_doc(obj) + "\n")
        for name, kind, member in _members(obj):
            if kind == "property":
                first = (_doc(member).splitlines() or [""])[0]
                lines.append(f"- property `{name}`: {first}")
            else:
                lines.append(f"\n#### `{qualname}.{name}{_signature(member)}`\n")
                lines.append(_doc(member) + "\n")
        lines.append("")
    elif callable(obj):
        lines.append(f"### `{qualname}{_signature(obj)}`\n")
        lines.append(_doc(obj) + "\n")
    else:
        lines.append(f"### `{qualname}`\n")
        lines.append(f"`{obj!r}`\n")
    return "\n".join(lines)


def public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items()
                 if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__]
    return list(names)


def build() -> str:
    import cvxnn

    parts = [HEADER, "## `cvxnn`\n", _doc(cvxnn) + "\n"]
    seen = set()
    for name in public_names(cvxnn):
        obj = getattr(cvxnn, name)
        seen.add(id(obj))
        parts.append(_render(f"cvxnn.{name}", obj))
    for modname in MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError as exc:    # optional dependency missing
            parts.append(f"## `{modname}`\n\n(not importable here: {exc})\n")
            continue
        parts.append(f"## `{modname}`\n")
        parts.append(_doc(mod) + "\n")
        for name in public_names(mod):
            obj = getattr(mod, name, None)
            if obj is None:
                continue
            if id(obj) in seen:
                parts.append(f"- `{modname}.{name}`: see `cvxnn.{name}` above.\n")
                continue
            seen.add(id(obj))
            parts.append(_render(f"{modname}.{name}", obj))
    return "\n".join(parts).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/api.md differs from the docstrings")
    parser.add_argument("--out", default=str(Path(__file__).with_name("api.md")))
    args = parser.parse_args(argv)
    text = build()
    out = Path(args.out)
    if args.check:
        current = out.read_text() if out.exists() else ""
        if current != text:
            print(f"{out} is out of date: run python docs/make_api.py", file=sys.stderr)
            return 1
        return 0
    out.write_text(text)
    print(f"wrote {out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
