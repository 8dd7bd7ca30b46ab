"""Sphinx configuration of the sklearn_swag documentation.

Build it from the repository root with::

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The build runs every ``examples/plot_*.py`` (sphinx-gallery), so a broken
example breaks it, and treats every warning as an error.
"""

import logging
import sys
from pathlib import Path

import matplotlib
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging as sphinx_logging

import sklearn_swag

matplotlib.use("Agg")

# -- Project --------------------------------------------------------------------------
project = "sklearn_swag"
author = "The sklearn_swag developers"
copyright = "The sklearn_swag developers"
release = sklearn_swag.__version__
version = release

# -- General --------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "literal"

# -- autodoc and autosummary ----------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # numpydoc writes the types from the docstrings
# Members that a class inherits (torch.nn.Module's for ParticleStack) are not
# documented here, nor do members without a docstring of their own borrow one.
autodoc_inherit_docstrings = False

# -- numpydoc -------------------------------------------------------------------------
numpydoc_show_class_members = False  # the class template lists the members
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
# Fail the build on a docstring whose Parameters do not match its signature
# (PR01 missing, PR02 unknown) or that returns a value without a Returns
# section (RT01).
numpydoc_validation_checks = {"PR01", "PR02", "RT01"}

# -- intersphinx ----------------------------------------------------------------------
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
    "skorch": ("https://skorch.readthedocs.io/en/stable/", None),
    "joblib": ("https://joblib.readthedocs.io/en/stable/", None),
    "matplotlib": ("https://matplotlib.org/stable/", None),
}
intersphinx_timeout = 10

# -- sphinx-gallery -------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Run every example; a failing one fails the build.
    "filename_pattern": r"/plot_",
    "doc_module": ("sklearn_swag",),
    "backreferences_dir": "generated/backreferences",
    "within_subsection_order": "FileNameSortKey",
    # The figures left open at the end of each code block; sphinx-gallery runs
    # the examples without ``__file__``, and they save no files then.
    "image_scrapers": ("matplotlib",),
}

# -- HTML -----------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn_swag {release}"
html_static_path = ["_static"]
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
}
html_sidebars = {"index": [], "install": []}


# -- Strictness -----------------------------------------------------------------------
class _UnreachableInventories(logging.Filter):
    """Report intersphinx inventories that cannot be fetched as information.

    Without a network (the project's build machines reach package registries
    only) intersphinx cannot download the inventories of Python, numpy, scipy,
    scikit-learn, PyTorch, skorch, joblib and matplotlib, and Sphinx says so
    with the warning "failed to reach any of the inventories ...". In Sphinx
    9 (``sphinx/ext/intersphinx/_load.py``) that warning has no type or
    subtype, so ``suppress_warnings`` cannot name it. This filter turns that
    one message into an INFO line (still printed); links into those projects
    are then plain text, and every other warning still fails a ``-W`` build.
    With a network the inventories load and the message never appears.
    """

    def filter(self, record):
        if record.levelno == logging.WARNING and str(record.msg).startswith(
            "failed to reach any of the inventories"
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "intersphinx: " + str(record.msg)
            record.nonl = False  # a warning's line end is the handler's
        return True


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document the members that sklearn_swag defines, not scikit-learn's.

    ``set_score_request`` and ``set_predict_request`` are generated by
    scikit-learn's metadata routing for every regressor; scikit-learn documents
    them, and their docstrings link into its user guide.
    """
    module = getattr(obj, "__module__", None) or ""
    if what == "class" and module and not module.startswith("sklearn_swag"):
        return True
    return None


def _comment_where_assigned(app, what, name, obj, options, lines):
    """Document re-exported data with the ``#:`` comment where it is assigned.

    ``sklearn_swag.neg_nll_scorer`` is assigned, with its ``#:`` comment, in
    ``sklearn_swag.metrics._scorer`` and imported into ``sklearn_swag.metrics``
    and ``sklearn_swag``; autodoc looks for the comment in ``sklearn_swag`` only
    and would show the docstring of the object's (private) class instead.
    """
    if what != "data":
        return
    short = name.rpartition(".")[2]
    # The modules that hold the object, by name: its class may be another
    # library's (neg_ece_scorer is a scikit-learn scorer). Packages that import
    # it hold no comment for it, the module that assigns it does; the former
    # module names of sklearn_swag._moved have no source (no __file__ of their
    # own: getattr would forward the question to the modules they stand for).
    holders = [
        key
        for key, mod in sorted(sys.modules.items())
        if key.startswith("sklearn_swag.")
        and getattr(mod, "__dict__", {}).get("__file__")
        and getattr(mod, short, None) is obj
    ]
    for module in holders:
        analyzer = ModuleAnalyzer.for_module(module)
        analyzer.analyze()
        comment = analyzer.attr_docs.get(("", short))
        if comment:
            lines[:] = list(comment)
            return


def _check_api_page(app):
    """Warn (an error under ``-W``) if api.rst misses a public object."""
    text = (Path(app.srcdir) / "api.rst").read_text(encoding="utf-8")
    listed = {line.strip() for line in text.splitlines()}
    missing = [
        name
        for name in sklearn_swag.__all__
        if name != "__version__" and name not in listed
    ]
    if missing:
        sphinx_logging.getLogger("sklearn_swag_docs").warning(
            "api.rst does not list %s from sklearn_swag.__all__", missing
        )


def setup(app):
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("sphinx.sphinx.ext.intersphinx"):
            logging.getLogger(name).addFilter(_UnreachableInventories())
    app.connect("builder-inited", _check_api_page)
    app.connect("autodoc-skip-member", _skip_foreign_members)
    # Before numpydoc (priority 500) parses and validates the docstring.
    app.connect("autodoc-process-docstring", _comment_where_assigned, priority=100)
