"""The kernel skeletons: C and Triton source templates shipped as package data.

The templates (``templates/*.c.tmpl``, ``templates/*.py.tmpl``) hold everything of a kernel
that is not a charge: loops, pointers, threading, dispatch. Generation
(:mod:`.c_codegen`, :mod:`.triton_lif`) fills their ``${name}`` fields with statements generated
from :mod:`.spec`. A field left unfilled is an error, never an empty hole.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from string import Template

__all__ = ["render"]


@cache
def _load(name: str) -> Template:
    return Template((files(__package__) / "templates" / name).read_text(encoding="utf-8"))


def render(template: str, **values: object) -> str:
    """``template`` (a file in ``templates/``) with every field filled from ``values``."""
    return _load(template).substitute({k: str(v) for k, v in values.items()})
