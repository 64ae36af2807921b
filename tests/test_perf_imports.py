"""Start-up cost guards and the exactness of the Clopper-Pearson bound without scipy.stats."""

import subprocess
import sys

import pytest

from pipeline.rules import response as R


def printed_by_fresh_python(code: str) -> str:
    """What ``code`` prints in a new interpreter (nothing imported yet), stripped."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_building_does_not_import_scipy_stats():
    """scipy.stats costs about a second of start-up; the build needs one beta quantile."""
    code = ("import importlib, sys, pipeline.build as b, pipeline.rules.response as r\n"
            "for m in b.REGISTRY: importlib.import_module(f'{b.DOMAIN_PACKAGE}.{m}')\n"
            "for h in b.POST_EXPORT_HOOKS: importlib.import_module(h.module)\n"
            "r.clopper_pearson(3, 7)\n"
            "print('scipy.stats' in sys.modules)")
    assert printed_by_fresh_python(code) == "False"


def test_clopper_pearson_equals_scipy_stats_beta_ppf_bit_for_bit():
    """The bound is the same float as scipy.stats.beta.ppf (the definition) on a grid of n."""
    beta = pytest.importorskip("scipy.stats").beta
    for n in (1, 2, 5, 19, 36, 100, 2000):
        for x in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            lo, hi = R.clopper_pearson(x, n)
            assert lo == (0.0 if x == 0 else float(beta.ppf(0.025, x, n - x + 1)))
            assert hi == (1.0 if x == n else float(beta.ppf(0.975, x + 1, n - x)))


def test_the_build_parent_registers_the_pdf_fonts_before_the_workers_fork():
    """Importing the post-export hooks, as the parent of a parallel build does before it forks
    the study workers (pipeline.parallel.preload), parses and registers the PDF fonts and
    imports reportlab's canvas, so that the workers inherit them: no PDF drawn yet."""
    code = ("import importlib, sys, pipeline.build as b\n"
            "for h in b.POST_EXPORT_HOOKS: importlib.import_module(h.module)\n"
            "from reportlab.pdfbase import pdfmetrics\n"
            "from pipeline.report import tlf\n"
            "print(tlf.pdf_fonts.cache_info().currsize, 'reportlab.pdfgen.canvas' in sys.modules,\n"
            "      sorted(n for n in pdfmetrics.getRegisteredFontNames() if n.startswith('DejaVu')))")
    assert printed_by_fresh_python(code) == "1 True ['DejaVuSans', 'DejaVuSans-Bold']"
