"""End to end over the embedded raw extract of NCT06316427 (skips visibly when raw/ is empty).

1. DM, EX, SE, DS, IE, VS and the trial design built from raw/ with the real intake reader pass
   the spec-generated output checks, and every raw row of dm/ex/ds/ie/vs is consumed or rejected.
2. ``python -m pipeline build --study NCT06316427`` writes our datasets (when the build module
   exists and the gate does not stop the study on forms owned by other modules).
"""

import importlib
import subprocess
import sys

import pandas as pd
import pytest

from dm_ex_ds_fixture import ROOT, STUDY

MODULES = ["dm", "ex", "se", "ds", "ie", "vs", "trial_design"]
FORMS = ["dm", "ex", "ds", "ie", "vs"]
OUR_DATASETS = ["DM", "SUPPDM", "EX", "SE", "DS", "SUPPDS", "IE", "VS", "TS", "TA", "TE", "TV", "TI"]


def _raw_dir():
    raw = ROOT / "raw"
    if not (raw / STUDY).is_dir() or not any((raw / STUDY).iterdir()):
        pytest.skip(f"raw/{STUDY} is empty: no embedded extract to build end to end")
    return raw


def test_our_datasets_pass_output_checks_on_raw():
    raw = _raw_dir()
    from pipeline.config import load_study
    from pipeline.context import StudyContext
    from pipeline.export.checks import check_datasets
    from pipeline.intake.readers import read_study
    from pipeline.spec import load_spec
    from pipeline.errors import ConfigError
    try:
        spec = load_spec(ROOT / "specs")
    except ConfigError as exc:       # a teammate's spec in progress; ours only when it names our datasets
        import re
        assert not set(re.findall(r"\b([A-Z]{2,8})\b", str(exc))) & set(OUR_DATASETS), str(exc)
        pytest.skip(f"specification problems outside our datasets: {str(exc)[-300:]}")
    study = load_study(ROOT / "specs", STUDY)
    forms, _ = read_study(raw, study, spec)
    ctx = StudyContext(study=study, spec=spec, forms=forms)
    results = []
    for m in MODULES:
        r = importlib.import_module(f"pipeline.domains.{m}").build(ctx)
        ctx.datasets.update(r.datasets)
        results.append(r)
    findings = check_datasets({k: ctx.datasets[k] for k in OUR_DATASETS}, spec, STUDY)
    errors = findings[findings["severity"] == "error"]
    assert errors.empty, errors[["file", "column", "check", "message"]].head(10).to_string()
    cons = pd.concat([r.consumed for r in results])
    rej = pd.concat([r.rejected for r in results])
    for form in FORMS:
        if form not in forms:
            continue
        rows = set(forms[form]["_ROW"])
        seen = set(cons.loc[cons["form"] == form, "row"]) | set(rej.loc[rej["form"] == form, "row"])
        assert rows <= seen, f"{form}: rows neither consumed nor rejected: {sorted(rows - seen)[:10]}"
    dm = ctx.datasets["DM"]
    ts = ctx.datasets["TS"].set_index("TSPARMCD")
    assert int(ts.loc["ACTSUB", "TSVAL"]) == int(dm["ACTARMCD"].ne("").sum())


def test_cli_build_writes_our_datasets(tmp_path):
    raw = _raw_dir()
    if importlib.util.find_spec("pipeline.build") is None:
        pytest.skip("pipeline.build is not in the tree yet")
    proc = subprocess.run([sys.executable, "-m", "pipeline", "build", "--study", STUDY, "--raw", str(raw),
                           "--specs", str(ROOT / "specs"), "--out", str(tmp_path), "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode == 2:      # configuration error: ours only when it names one of our datasets
        import re
        named = set(re.findall(r"\b([A-Z]{2,8})\b", proc.stderr)) & set(OUR_DATASETS)
        assert not named, proc.stderr[-2000:]
        pytest.skip(f"build configuration error outside our datasets: {proc.stderr.strip()[-300:]}")
    if proc.returncode != 0:
        ours_names = set(FORMS) | set(OUR_DATASETS) | {m for m in MODULES}
        errs = []
        for report in (tmp_path / "gate" / "gate_report.csv", tmp_path / "gate" / f"{STUDY}_build_findings.csv"):
            if report.is_file():
                g = pd.read_csv(report, dtype=str, keep_default_na=False)
                errs.append(g[g["severity"] == "error"])
        errs = pd.concat(errs) if errs else pd.DataFrame(columns=["file", "check", "message"])
        ours = errs[errs["file"].str.split(".").str[0].str.strip().isin(ours_names)]
        assert ours.empty, ours.head(10).to_string()
        if len(errs):
            pytest.skip(f"build of {STUDY} stopped by errors outside DM/EX/SE/DS/IE/VS/trial design: "
                        f"{sorted(set(errs['file'] + ':' + errs['check']))[:5]}")
        pytest.fail(f"build failed: {proc.stderr.strip()[-2000:]}")
    out = tmp_path / STUDY
    for ds in OUR_DATASETS:
        assert (out / f"{ds.lower()}.xpt").is_file() or (out / f"{ds.lower()}.json").is_file(), ds
