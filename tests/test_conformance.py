"""The CDISC CORE conformance command: explanations, findings, counts, reports, class supply.

Everything except the last test runs without the engine (hand-built engine results). The last
test runs the real engine on the smallest shipped study when ``.venv-core`` has it and the shared
rules cache is present, and skips visibly otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import cli
from pipeline.errors import ConfigError
from pipeline.export import conformance as conf
from pipeline.export import core_runner as runner
from pipeline.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
HEADER = "rule_id,dataset,variable,value_regex,explanation,justification,added_by,added_on\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---- explanations file ---------------------------------------------------------------------
def test_read_explanations_absent_file_is_empty(tmp_path):
    frame = conf.read_explanations(tmp_path / "none.explanations.csv")
    assert list(frame.columns) == conf.EXPLANATION_COLUMNS and frame.empty


def test_read_explanations_parses_and_normalises(tmp_path):
    p = write(tmp_path / "S.explanations.csv", HEADER
              + " CORE-000289 , lb , lborres ,[<>].*,Censored result,SDTMIG 3.4 LB assumption,dm1,2026-12-01\n"
              + "CORE-000744,,,,Why,Because,dm2,2026-11-30\n")
    frame = conf.read_explanations(p)
    assert frame.to_dict("records") == [
        {"rule_id": "CORE-000289", "dataset": "LB", "variable": "LBORRES", "value_regex": "[<>].*",
         "explanation": "Censored result", "justification": "SDTMIG 3.4 LB assumption", "added_by": "dm1",
         "added_on": "2026-12-01"},
        {"rule_id": "CORE-000744", "dataset": "", "variable": "", "value_regex": "", "explanation": "Why",
         "justification": "Because", "added_by": "dm2", "added_on": "2026-11-30"},
    ]


def test_read_explanations_reports_every_problem_with_its_line(tmp_path):
    p = write(tmp_path / "S.explanations.csv", HEADER
              + "CG0151,DM,,,x,y,me,2026-12-01\n"           # line 2: not a CORE id
              + "CORE-000001,DM,,,,y,me,2026-12-01\n"       # line 3: no explanation
              + "CORE-000002,DM,,,x,,me,01/12/2026\n"       # line 4: no justification, bad date
              + "CORE-000003,DM,,,x,y,me,2026-12-01\n"
              + "CORE-000003,dm,,,x2,y2,me,2026-12-01\n"    # line 6: same key as line 5
              + "CORE-000004,DM,,A.*,x,y,me,2026-12-01\n"   # line 7: value_regex without variable
              + "CORE-000004,DM,ARM,(,x,y,me,2026-12-01\n") # line 8: bad regex
    with pytest.raises(ConfigError) as exc:
        conf.read_explanations(p)
    msg = str(exc.value)
    for part in ["line 2: rule_id 'CG0151'", "line 3: explanation is empty", "line 4: justification is empty",
                 "line 4: added_on '01/12/2026'", "line 6: repeats", "line 7: value_regex needs a variable",
                 "line 8: value_regex '(' is not a regular expression"]:
        assert part in msg
    assert "line 5" not in msg


def test_read_explanations_missing_column(tmp_path):
    p = write(tmp_path / "S.explanations.csv", "rule_id,dataset,explanation\nCORE-000001,DM,x\n")
    with pytest.raises(ConfigError, match="missing column.*variable.*justification"):
        conf.read_explanations(p)


# ---- findings, explanations, counts from hand-built engine results -------------------------
def result(dataset, status, n=0, variables=(), message="m", values=None):
    errors = [{"row": i + 1, "value": (values[i] if values else {v: str(i) for v in variables})}
              for i in range(n)] if status == "issue reported" else (
        [{"error": "Outside scope", "message": "skipped"}] if status == "skipped" else
        [{"error": "Error occurred during dataset building", "message": "Class metadata is not found"}]
        if status == "execution error" else [])
    return {"dataset": dataset, "executionStatus": status, "variables": list(variables), "message": message,
            "errors": errors}


RESULTS = [
    # ran on DM and AE, issues in both
    {"id": "CORE-000010", "message": "r10", "results": [
        result("AE", "issue reported", 3, ["AESTDTC", "DSSTDTC"], "AE after DS"),
        result("DM", "issue reported", 2, ["RFXSTDTC"], "RFX"),
        result("LB", "skipped")]},
    # ran, no issues
    {"id": "CORE-000020", "message": "r20", "results": [result("DM", "success"), result("AE", "skipped")]},
    # only skipped: not run
    {"id": "CORE-000030", "message": "r30", "results": [result("DM", "skipped")]},
    # execution error only: not run, one execution error
    {"id": "CORE-000040", "message": "r40", "results": [result("DM", "execution error")]},
    # ran on LB with 5 issues, errored on TS: run, with issues, and an execution error
    {"id": "CORE-000050", "message": "r50", "results": [
        result("TS", "execution error"), result("LB", "issue reported", 5, ["LBORRES", "LBORNRHI"], "LB hi")]},
]


def test_findings_table_one_row_per_rule_and_dataset_with_issues():
    f = conf.findings_table(conf.issue_table(RESULTS, {"CORE-000010": "CG0001"}))
    assert f[["rule_id", "cdisc_rule_id", "dataset", "variables", "issues"]].values.tolist() == [
        ["CORE-000010", "CG0001", "AE", "AESTDTC|DSSTDTC", 3],
        ["CORE-000010", "CG0001", "DM", "RFXSTDTC", 2],
        ["CORE-000050", "", "LB", "LBORRES|LBORNRHI", 5],
    ]
    assert f["message"].tolist() == ["AE after DS", "RFX", "LB hi"]


def test_execution_errors_listed_with_reason():
    e = conf.execution_errors(RESULTS)
    assert e[["rule_id", "dataset"]].values.tolist() == [["CORE-000040", "DM"], ["CORE-000050", "TS"]]
    assert (e["message"] == "Class metadata is not found").all()


def explanations(rows):
    return pd.DataFrame([dict(zip(conf.EXPLANATION_COLUMNS, r)) for r in rows], columns=conf.EXPLANATION_COLUMNS)


def test_apply_explanations_dataset_scope_variable_scope_and_stale_rows():
    ex = explanations([
        ("CORE-000010", "DM", "", "", "DM reason", "DM just", "me", "2026-12-01"),
        ("CORE-000050", "LB", "LBORRES", "", "LB reason", "LB just", "me", "2026-12-01"),
        ("CORE-000050", "LB", "VSORRES", "", "never", "matches", "me", "2026-12-01"),   # variable not involved
        ("CORE-000099", "", "", "", "fixed long ago", "x", "me", "2026-12-01"),      # rule with no finding
    ])
    out, stale = conf.explain(RESULTS, ex)
    assert out["issues"].sum() == 10  # nothing dropped
    assert out[["rule_id", "dataset", "explained", "explanation"]].values.tolist() == [
        ["CORE-000010", "AE", "N", ""],
        ["CORE-000010", "DM", "Y", "DM reason"],
        ["CORE-000050", "LB", "Y", "LB reason"],
    ]
    assert stale["rule_id"].tolist() == ["CORE-000050", "CORE-000099"]
    assert stale["variable"].tolist() == ["VSORRES", ""]


def test_apply_explanations_most_specific_row_wins_and_general_row_stays_in_use():
    ex = explanations([
        ("CORE-000010", "", "", "", "any dataset", "j1", "me", "2026-12-01"),
        ("CORE-000010", "AE", "AESTDTC", "", "AE specific", "j2", "me", "2026-12-01"),
    ])
    out, stale = conf.explain(RESULTS, ex)
    got = out.set_index("dataset").loc[["AE", "DM"], "explanation"].tolist()
    assert got == ["AE specific", "any dataset"]
    assert stale.empty


def test_value_regex_explains_only_the_records_it_matches():
    res = [{"id": "CORE-000289", "message": "", "results": [result(
        "LB", "issue reported", 4, ["LBORRES", "LBORNRHI"], "not continuous",
        [{"LBORRES": "<1.5", "LBORNRHI": "6.7"}, {"LBORRES": ">15000", "LBORNRHI": "157"},
         {"LBORRES": "POSITIVE", "LBORNRHI": "1"}, {"LBORRES": "1<2", "LBORNRHI": "1"}])]}]
    ex = explanations([("CORE-000289", "LB", "LBORRES", r"[<>]\d+(\.\d+)?", "censored", "LLOQ", "me", "2026-12-01")])
    out, stale = conf.explain(res, ex)
    assert out[["explained", "issues"]].values.tolist() == [["N", 2], ["Y", 2]]
    assert stale.empty
    out, stale = conf.explain(res, explanations([("CORE-000289", "LB", "LBORRES", "BLQ", "x", "y", "me", "2026-12-01")]))
    assert out["explained"].tolist() == ["N"] and len(stale) == 1


def test_split_domain_result_is_covered_per_member_by_value():
    """CORE reports the split FA datasets as one result "FA, FAPR"; the FA row explains the CRS
    records, the FAPR row the procedure records, and an unmatched value stays unexplained."""
    res = [{"id": "CORE-000744", "message": "", "results": [result(
        "FA, FAPR", "issue reported", 3, ["FAOBJ"], "FAOBJ not parent term",
        [{"FAOBJ": "Cytokine release syndrome"}, {"FAOBJ": "LEUKAPHERESIS"}, {"FAOBJ": "OTHER"}])]}]
    ex = explanations([("CORE-000744", "FA", "FAOBJ", "Cytokine release syndrome", "crs", "j", "me", "2026-12-01"),
                       ("CORE-000744", "FAPR", "FAOBJ", "LEUKAPHERESIS", "proc", "j", "me", "2026-12-01"),
                       ("CORE-000744", "F", "FAOBJ", "OTHER", "no such dataset", "j", "me", "2026-12-01")])
    out, stale = conf.explain(res, ex)
    assert sorted(out[["explanation", "issues"]].values.tolist()) == [["", 1], ["crs", 1], ["proc", 1]]
    assert stale["dataset"].tolist() == ["F"]


def test_counts_computed_by_hand():
    f, _ = conf.explain(RESULTS, explanations([
        ("CORE-000050", "LB", "", "", "ok", "ok", "me", "2026-12-01")]))
    c = conf.counts(RESULTS, f)
    # run: 010 (AE, DM), 020 (DM), 050 (LB) = 3; with issues: 010, 050; issues 3 + 2 + 5 = 10;
    # execution errors: 040, 050; unexplained: 010's 5 issues in 1 rule
    assert c == conf.Counts(rules_selected=5, rules_run=3, rules_with_issues=2, issues=10,
                            execution_errors=2, unexplained_issues=5, unexplained_rules=1)
    line = conf.summary_line("S1", "0.17.1", c, Path("sdtm/S1/reports/core_summary.html"))
    assert line == ("S1: CORE 0.17.1 SDTMIG 3.4: 3 of 5 rules run, 2 with issues, 10 issue(s), "
                    "2 execution error(s), 5 unexplained issue(s) in 1 rule(s) -> sdtm/S1/reports/core_summary.html")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["CORE-000001", "CORE-000002", "CORE-000003"]),
                          st.sampled_from(["AE", "DM", "LB"]), st.integers(1, 50)), unique_by=lambda t: t[:2]),
       st.lists(st.tuples(st.sampled_from(["CORE-000001", "CORE-000002", "CORE-000004"]),
                          st.sampled_from(["", "AE", "DM"])), unique=True))
def test_explaining_never_drops_or_double_counts(found, rows):
    res = [{"id": r, "message": "", "results": [result(d, "issue reported", n, ["X"])]} for r, d, n in found]
    out, stale = conf.explain(res, explanations([(r, d, "", "", "e", "j", "me", "2026-12-01") for r, d in rows]))
    assert len(out) == len(found) and out["issues"].sum() == sum(n for *_, n in found)
    expect = {(r, d) for r, d, _ in found if any(r == er and ed in ("", d) for er, ed in rows)}
    assert set(map(tuple, out.loc[out["explained"] == "Y", ["rule_id", "dataset"]].values.tolist())) == expect
    used = {(er, ed) for er, ed in rows if any(r == er and ed in ("", d) for r, d, _ in found)}
    assert set(map(tuple, stale[["rule_id", "dataset"]].values.tolist())) == set(rows) - used


# ---- the summary writer -------------------------------------------------------------------
def test_write_reports_deterministic_and_readable(tmp_path):
    doc = {"engine_version": "0.17.1", "version": "3.4", "ct_packages": ["sdtmct-2025-03-28"],
           "library_metadata": "classes from specs/sdtm/datasets.csv", "cache_files": {"rules.pkl": "ab" * 32},
           "rules_selected": 5, "results": RESULTS, "core_report": {"Issue_Summary": []}}
    f, stale = conf.explain(RESULTS, explanations([
        ("CORE-000010", "DM", "", "", "DM <reason> & more", "j", "me", "2026-12-01"),
        ("CORE-000077", "", "", "", "stale", "j", "me", "2026-12-01")]))
    c = conf.counts(RESULTS, f)
    folder = tmp_path / "S1"
    args = (doc, f, conf.execution_errors(RESULTS), stale, c, ["XX"])
    summary = conf.write_reports(folder, *args)
    first = {p.name: p.read_bytes() for p in (folder / "reports").iterdir()}
    conf.write_reports(folder, *args)
    assert {p.name: p.read_bytes() for p in (folder / "reports").iterdir()} == first
    assert sorted(first) == ["core_findings.csv", "core_report.json", "core_summary.html"]
    back = pd.read_csv(folder / "reports" / "core_findings.csv", dtype=str, keep_default_na=False)
    assert back[["rule_id", "dataset", "issues", "explained"]].values.tolist() == [
        ["CORE-000010", "AE", "3", "N"], ["CORE-000010", "DM", "2", "Y"], ["CORE-000050", "LB", "5", "N"]]
    page = summary.read_text(encoding="utf-8")
    assert page.count('<tr class="unexplained">') == 2
    assert "DM &lt;reason&gt; &amp; more" in page and "<reason>" not in page
    assert "CORE-000077" in page and "XX" in page  # stale explanation and unclassified dataset listed
    assert page.index("CORE-000050") < page.index("DM &lt;reason")  # unexplained rows first
    report = json.loads(first["core_report.json"])
    assert report["Run"]["engine_version"] == "0.17.1" and report["Issue_Summary"] == []
    assert str(tmp_path) not in first["core_report.json"].decode()


# ---- class supply --------------------------------------------------------------------------
def test_dataset_classes_come_from_the_spec():
    classes = conf.dataset_classes(load_spec(ROOT / "specs").datasets)
    assert classes["DM"] == "SPECIAL PURPOSE" and classes["FA"] == "FINDINGS ABOUT"
    assert classes["RELREC"] == "RELATIONSHIP" and classes["TS"] == "TRIAL DESIGN" and classes["EX"] == "INTERVENTIONS"


def test_library_classes_shape_the_engine_reads():
    md = runner.library_classes({"DM": "SPECIAL PURPOSE", "SE": "special purpose", "TS": "TRIAL DESIGN",
                                 "FA": "FINDINGS ABOUT", "XX": ""})
    assert md == {"classes": [
        {"name": "Special-Purpose", "datasets": [{"name": "DM"}, {"name": "SE"}]},
        {"name": "Findings About", "datasets": [{"name": "FA"}]},
        {"name": "Trial Design", "datasets": [{"name": "TS"}]},
    ]}


def test_library_classes_keep_a_full_caches_class_and_add_only_missing_datasets():
    library = {"name": "SDTMIG", "classes": [{"name": "Events", "datasets": [{"name": "AE", "label": "Adverse Events"}]}]}
    md = runner.library_classes({"AE": "FINDINGS", "DS": "EVENTS"}, library)
    assert md["classes"] == [{"name": "Events", "datasets": [{"name": "AE", "label": "Adverse Events"}, {"name": "DS"}]}]
    assert library["classes"][0]["datasets"] == [{"name": "AE", "label": "Adverse Events"}]  # input untouched
    with pytest.raises(runner.RunnerError, match="not an SDTM class"):
        runner.library_classes({"QQ": "MYSTERY"})


def test_study_job_names_each_dataset_class_and_domain(tmp_path):
    import pyreadstat

    folder = tmp_path / "S1"
    folder.mkdir()
    pyreadstat.write_xport(pd.DataFrame({"STUDYID": ["S1"], "DOMAIN": ["LB"]}), str(folder / "lbda.xpt"), table_name="LBDA")
    pyreadstat.write_xport(pd.DataFrame({"STUDYID": ["S1"], "DOMAIN": ["ZZ"]}), str(folder / "zz.xpt"), table_name="ZZ")
    (folder / "define.xml").write_text("<ODM/>")
    job = conf.study_job(folder, {"LBDA": "FINDINGS"}, tmp_path, ["CORE-000002", "CORE-000001"])
    assert [(d["name"], d["class"], d["domain"]) for d in job["datasets"]] == [("LBDA", "FINDINGS", "LB"), ("ZZ", "", "ZZ")]
    assert job["unclassified"] == ["ZZ"] and job["rules"] == ["CORE-000001", "CORE-000002"]
    assert job["standard"] == "sdtmig" and job["version"] == "3.4"


def test_rules_for_standard_sorted_and_checked():
    rules = {"CORE-000002": {"core_id": "CORE-000002"}, "CORE-000001": {"core_id": "CORE-000001"}}
    got = runner.rules_for_standard(rules, {"sdtmig/3-4": ["CORE-000002", "CORE-000001"]}, "sdtmig", "3.4")
    assert [r["core_id"] for r in got] == ["CORE-000001", "CORE-000002"]
    with pytest.raises(runner.RunnerError, match="CORE-000009"):
        runner.rules_for_standard(rules, {"sdtmig/3-4": ["CORE-000001"]}, "sdtmig", "3.4", ["CORE-000009"])
    with pytest.raises(runner.RunnerError, match="no rules for sdtmig/3-3"):
        runner.rules_for_standard(rules, {"sdtmig/3-4": ["CORE-000001"]}, "sdtmig", "3.3")


# ---- configuration errors: one line, exit 2 ------------------------------------------------
def fake_build(out: Path, sid: str = "S1") -> Path:
    import pyreadstat

    folder = out / sid
    folder.mkdir(parents=True)
    (folder / "define.xml").write_text("<ODM/>")
    pyreadstat.write_xport(pd.DataFrame({"STUDYID": [sid], "DOMAIN": ["DM"]}), str(folder / "dm.xpt"), table_name="DM")
    return folder


def test_cache_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(conf.CACHE_ENV, raising=False)
    with pytest.raises(ConfigError, match="no CDISC CORE rules cache"):
        conf.resolve_cache(None, root=tmp_path / "project")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "rules.pkl").write_bytes(b"")
    with pytest.raises(ConfigError, match="lacks rules_dictionary.pkl"):
        conf.resolve_cache(cache)
    (cache / "rules_dictionary.pkl").write_bytes(b"")
    assert conf.resolve_cache(cache) == cache.resolve()
    monkeypatch.setenv(conf.CACHE_ENV, str(cache))
    assert conf.resolve_cache(None, root=tmp_path / "project") == cache.resolve()
    shared = tmp_path / "shared" / "reference" / "cdisc-core-cache"
    shared.mkdir(parents=True)
    monkeypatch.delenv(conf.CACHE_ENV)
    with pytest.raises(ConfigError, match=r"\(default\) lacks rules.pkl, rules_dictionary.pkl"):
        conf.resolve_cache(None, root=tmp_path / "project")


def test_cli_engine_missing_says_how_to_install(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sdtm"
    fake_build(out)
    cache = tmp_path / "cache"
    cache.mkdir()
    for f in ("rules.pkl", "rules_dictionary.pkl"):
        (cache / f).write_bytes(b"")
    monkeypatch.setenv(conf.PYTHON_ENV, str(tmp_path / "no-such-venv" / "bin" / "python"))
    code = cli.main(["conformance", "--out", str(out), "--core-cache", str(cache), "--specs", str(ROOT / "specs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "engine not installed" in err[0] and "make conformance" in err[0]


def test_cli_unbuilt_study_and_empty_out(tmp_path, capsys):
    out = tmp_path / "sdtm"
    fake_build(out)
    code = cli.main(["conformance", "--out", str(out), "--study", "NOPE", "--specs", str(ROOT / "specs")])
    assert code == 2 and "study NOPE not built" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    code = cli.main(["conformance", "--out", str(tmp_path / "empty"), "--specs", str(ROOT / "specs")])
    assert code == 2 and "no built study" in capsys.readouterr().err


def test_shipped_explanations_files_parse():
    for p in sorted((ROOT / "specs" / "studies").glob("*.explanations.csv")):
        frame = conf.read_explanations(p)
        assert p.name.removesuffix(".explanations.csv") in {q.stem for q in (ROOT / "specs" / "studies").glob("*.toml")}
        assert (frame["explanation"] != "").all()


# ---- the real engine (skips visibly when absent) -------------------------------------------
def engine_or_skip() -> tuple[Path, Path]:
    py = Path(os.environ.get(conf.PYTHON_ENV, "") or ROOT / ".venv-core" / "bin" / "python")
    if not py.exists():
        pytest.skip(f"CDISC CORE engine not installed ({py}); `make conformance` installs it")
    if subprocess.run([str(py), str(conf.RUNNER), "--check"], capture_output=True).returncode != 0:
        pytest.skip(f"cdisc-rules-engine not importable with {py}; `make conformance` installs it")
    cache = ROOT.parent / "shared" / "reference" / "cdisc-core-cache"
    if os.environ.get(conf.CACHE_ENV):
        cache = Path(os.environ[conf.CACHE_ENV])
    if not (cache / "rules.pkl").is_file():
        pytest.skip(f"no CDISC CORE rules cache at {cache} (../shared absent; set {conf.CACHE_ENV})")
    return py, cache


#: DM-only rule scoped to class SPECIAL PURPOSE (USUBJID unique); LB rule (no class scope);
#: a rule needing library variable metadata, which the public cache lacks (execution error)
ENGINE_RULES = ["CORE-000351", "CORE-000289", "CORE-000355"]


@pytest.mark.slow
def test_engine_on_smallest_study_runs_class_scoped_rules(tmp_path):
    py, cache = engine_or_skip()
    from test_build_real_tree import RAW, SPECS, smallest_study

    import pipeline.build as build

    sid = smallest_study()
    if sid is None:
        pytest.skip("raw/ holds no study extracts")
    out = tmp_path / "sdtm"
    assert build.run_build(argparse.Namespace(study=[sid], raw=RAW, specs=SPECS, out=out, debug=False,
                                              no_progress=True)) == 0
    folder = out / sid
    spec = load_spec(SPECS)
    classes = conf.dataset_classes(spec.datasets)

    def run(job):
        (tmp_path / "job.json").write_text(json.dumps(job))
        proc = subprocess.run([str(py), str(conf.RUNNER), str(tmp_path / "job.json"), str(tmp_path / "r.json")],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        return json.loads((tmp_path / "r.json").read_text())

    def dm_status(doc):
        rule = next(r for r in doc["results"] if r["id"] == "CORE-000351")
        return {r["dataset"]: r["executionStatus"] for r in rule["results"]}["DM"]

    with_classes = run(conf.study_job(folder, classes, cache, ENGINE_RULES))
    without = run(conf.study_job(folder, {}, cache, ENGINE_RULES))
    assert dm_status(without) == "skipped"          # the engine alone cannot tell DM's class
    assert dm_status(with_classes) in conf.RAN      # with our spec's class the rule runs
    ran = lambda doc: sum(1 for r in doc["results"] if {x["executionStatus"] for x in r["results"]} & conf.RAN)  # noqa: E731
    assert ran(with_classes) > ran(without)

    c, line = conf.run_study(folder, py, classes, cache, SPECS, ENGINE_RULES)
    assert line.startswith(f"{sid}: CORE 0.17.1 SDTMIG 3.4: {c.rules_run} of 3 rules run")
    assert c.rules_run >= 2 and c.execution_errors >= 1
    reports = folder / "reports"
    first = {n: (reports / n).read_bytes() for n in ("core_report.json", "core_findings.csv", "core_summary.html")}
    report = json.loads(first["core_report.json"])
    assert report["Run"]["class_map"]["DM"] == "SPECIAL PURPOSE"
    assert {r["core_id"] for r in report["Rules_Report"]} == set(ENGINE_RULES)
    conf.run_study(folder, py, classes, cache, SPECS, ENGINE_RULES)
    assert {n: (reports / n).read_bytes() for n in first} == first   # byte-identical rerun
    from pipeline.export import manifest

    assert manifest.verify_manifest(folder) == []   # the later reports do not break the build's manifest
