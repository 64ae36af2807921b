"""The build orchestrator on a tiny synthetic study (fixture spec, fake domain modules, fake gate):
outputs, reconciliation counts, atomic swap, byte-identical rebuilds, hooks, exit codes."""

from __future__ import annotations

import hashlib
import io
import os
import sys
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "export"))
import exportkit as kit  # noqa: E402

import pipeline.build as build  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.export import manifest, writer  # noqa: E402
from pipeline.progress import Progress  # noqa: E402

SID = kit.STUDY


def tree_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture
def fake(monkeypatch):
    kit.use_fake_domains(monkeypatch)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return monkeypatch


def test_build_writes_every_output(fake, tmp_path):
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "out"
    assert build.run_build(kit.args(raw, out)) == 0
    study = out / SID
    files = sorted(tree_hashes(study))
    assert files == ["ae.json", "ae.xpt", "build.log", "dm.json", "dm.xpt", "lb.json", "lb.xpt", "manifest.csv",
                     "reports/ae_terms.csv", "reports/findings.csv", "reports/reconciliation.csv",
                     "reports/rejections.csv"]
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".cache"], "staging/trash left behind"
    assert manifest.verify_manifest(study) == []
    ae, meta = pyreadstat.read_xport(str(study / "ae.xpt"))
    # sorted by keys STUDYID|USUBJID|AETERM|AESTDTC; AESEQ by date within subject
    assert ae[["USUBJID", "AETERM", "AESEQ"]].values.tolist() == [
        ["TEST01-01-001", "Fever", 2.0], ["TEST01-01-001", "Headache", 1.0],
        ["TEST01-01-002", "Cytokine release syndrome", 1.0]]
    assert ae["AESTDY"].iloc[:2].tolist() == [3.0, -2.0] and pd.isna(ae["AESTDY"].iloc[2])
    assert meta.file_label == "Adverse Events"
    log = (study / "build.log").read_text()
    assert f"{SID}/ae.csv sha256 {hashlib.sha256((raw / SID / 'ae.csv').read_bytes()).hexdigest()} 4 rows" in log
    assert "pandas " in log and "pyreadstat " in log and "sdtmig_version = 3.4" in log
    assert "AE: 3 records, 9 variables" in log
    assert not any(ch.isdigit() and ":" in ln and "sha256" not in ln for ln in log.splitlines() for ch in ln[:2]), \
        "no clock times in build.log"
    assert read_csv(out / "gate" / f"{SID}_build_findings.csv").empty


def test_reconciliation_counts_add_up(fake, tmp_path):
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "out"
    assert build.run_build(kit.args(raw, out)) == 0
    rec = read_csv(out / SID / "reports" / "reconciliation.csv")
    totals = rec[rec["dataset"] == ""].set_index("form")
    # ae: 4 raw rows = 3 consumed + 1 rejected (duplicate X2) + 0 unaccounted
    assert totals.loc["ae", ["raw_records", "consumed_rows", "rejected_rows", "unaccounted_rows", "status"]].tolist() \
        == ["4", "3", "1", "0", "ok"]
    assert totals.loc["dm", ["raw_records", "consumed_rows", "unaccounted_rows"]].tolist() == ["3", "3", "0"]
    assert totals.loc["lb", ["raw_records", "consumed_rows", "unaccounted_rows"]].tolist() == ["4", "4", "0"]
    per_ds = rec[rec["dataset"] != ""].set_index(["form", "dataset"])
    assert per_ds.loc[("ae", "AE"), ["consumed_rows", "dataset_records"]].tolist() == ["3", "3"]
    rej = read_csv(out / SID / "reports" / "rejections.csv")
    assert rej.values.tolist() == [["ae", "ae.csv", "4", "AESPID", "X2", "duplicate entry of another AE record"]]


def test_unaccounted_rows_block_the_build(fake, tmp_path):
    fake.setattr(build, "REGISTRY", ["dm", "ae"])  # every registry module exists, none maps lb
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "out"
    assert build.run_build(kit.args(raw, out)) == 1
    assert not (out / SID).exists()
    f = read_csv(out / "gate" / f"{SID}_build_findings.csv")
    un = f[f["check"] == "unaccounted_row"]
    assert un[["file", "row", "severity"]].values.tolist() == [["lb.csv", str(r), "error"] for r in (2, 3, 4, 5)]


def test_form_of_a_missing_module_is_a_warning(fake, tmp_path):
    fake.setattr(build, "REGISTRY", ["dm", "ae", "lbx"])  # lbx is not in the tree: lb is "not mapped"
    fake.setattr(build, "LENIENT_MISSING_MODULES", True)
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "out"
    assert build.run_build(kit.args(raw, out)) == 0
    rec = read_csv(out / SID / "reports" / "reconciliation.csv")
    lb = rec[(rec["form"] == "lb") & (rec["dataset"] == "")].iloc[0]
    assert lb["unaccounted_rows"] == "4" and lb["status"].startswith("not mapped (module missing")
    warn = read_csv(out / SID / "reports" / "findings.csv")
    assert warn[["file", "check", "severity"]].values.tolist() == [["lb.csv", "form_not_mapped", "warning"]]
    assert "lbx: skipped (module export_fakes.lbx not in the tree yet)" in (out / SID / "build.log").read_text()
    fake.setattr(build, "LENIENT_MISSING_MODULES", False)
    assert build.run_build(kit.args(raw, out)) == 1


def test_rebuild_is_byte_identical(fake, tmp_path):
    # the file creation time of Dataset-JSON is the clock: fixed by SOURCE_DATE_EPOCH, as
    # reproducible builds do (make sdtm sets it), else the current time
    fake.setenv("SOURCE_DATE_EPOCH", "1700000000")
    raw = kit.write_raw(tmp_path / "raw")
    assert build.run_build(kit.args(raw, tmp_path / "a")) == 0
    first = tree_hashes(tmp_path / "a" / SID)
    assert build.run_build(kit.args(raw, tmp_path / "a", no_cache=True)) == 0  # a real rebuild, not the cache
    assert tree_hashes(tmp_path / "a" / SID) == first
    assert build.run_build(kit.args(raw, tmp_path / "b")) == 0
    assert tree_hashes(tmp_path / "b" / SID) == first


def test_source_date_epoch_sets_the_stamps(fake, tmp_path):
    raw = kit.write_raw(tmp_path / "raw")
    fake.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 2023-11-14T22:13:20Z
    assert build.run_build(kit.args(raw, tmp_path / "o")) == 0
    _, meta = pyreadstat.read_xport(str(tmp_path / "o" / SID / "dm.xpt"))
    assert str(meta.creation_time) == "2023-11-14 22:13:20"
    doc = (tmp_path / "o" / SID / "dm.json").read_text()
    assert '"datasetJSONCreationDateTime": "2023-11-14T22:13:20"' in doc
    # when the source data were last modified: the data cut-off, whatever the build's clock
    assert '"dbLastModifiedDateTime": "2025-06-30T00:00:00"' in doc


def test_without_source_date_epoch_dataset_json_is_created_now(fake, tmp_path):
    from datetime import UTC, datetime

    raw = kit.write_raw(tmp_path / "raw")
    before = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    assert build.run_build(kit.args(raw, tmp_path / "o")) == 0
    after = datetime.now(UTC).replace(tzinfo=None)
    import json

    doc = json.loads((tmp_path / "o" / SID / "dm.json").read_text())
    created = datetime.strptime(doc["datasetJSONCreationDateTime"], "%Y-%m-%dT%H:%M:%S")
    assert before <= created <= after
    assert doc["dbLastModifiedDateTime"] == "2025-06-30T00:00:00"
    _, meta = pyreadstat.read_xport(str(tmp_path / "o" / SID / "dm.xpt"))
    assert str(meta.creation_time) == "2025-06-30 00:00:00"  # XPT headers: the reproducible stamp


def test_failing_build_leaves_previous_outputs_untouched(fake, tmp_path):
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "out"
    assert build.run_build(kit.args(raw, out)) == 0
    before = tree_hashes(out / SID)
    bad_ae = list(kit.AE_ROWS) + [("TEST01", "01", "002", "9", "Fi\u00e8vre", "N", "16-FEB-2025")]
    kit.write_raw(raw.parent / "raw", ae=bad_ae)
    assert build.run_build(kit.args(raw, out)) == 1
    assert tree_hashes(out / SID) == before
    assert sorted(p.name for p in out.iterdir() if p.name != ".cache") == sorted(["gate", SID])
    assert not (out / ".cache" / f"{SID}.json").exists()  # a failed build is never reused (pipeline.buildcache)
    f = read_csv(out / "gate" / f"{SID}_build_findings.csv")
    err = f[f["severity"] == "error"]
    assert err[["file", "column", "check", "value"]].values.tolist() == [["AE", "AETERM", "ascii", "Fi\u00e8vre"]]


def test_export_failure_removes_staging(fake, tmp_path):
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "out"
    assert build.run_build(kit.args(raw, out)) == 0
    before = tree_hashes(out / SID)

    def boom(*a, **k):
        raise build.DataError("disk full (planted)")

    fake.setattr(build.datasetjson, "write_dataset_json", boom)
    assert build.run_build(kit.args(raw, out, no_cache=True)) == 1  # the inputs did not change: force the rebuild
    assert tree_hashes(out / SID) == before
    assert sorted(p.name for p in out.iterdir() if p.name != ".cache") == sorted(["gate", SID])
    assert not (out / ".cache" / f"{SID}.json").exists()
    f = read_csv(out / "gate" / f"{SID}_build_findings.csv")
    assert f["message"].tolist() == ["disk full (planted)"]


def test_gate_errors_skip_the_study_but_not_the_others(fake, tmp_path):
    raw = kit.write_raw(tmp_path / "raw")
    kit.write_raw(raw, study="TEST02")
    out = tmp_path / "out"
    assert build.run_build(kit.args(raw, out, study=None)) == 0
    before = tree_hashes(out / SID)
    bad_dm = [kit.DM_ROWS[0], ("TEST01", "01", "002", "60", "GATE-ERROR", "15-FEB-2025")]
    kit.write_raw(raw, dm=bad_dm)
    (out / "TEST02" / "dm.xpt").unlink()  # so that we can see TEST02 rebuilt
    assert build.run_build(kit.args(raw, out, study=None)) == 1
    assert tree_hashes(out / SID) == before
    assert (out / "TEST02" / "dm.xpt").is_file()
    gate = read_csv(out / "gate" / "gate_report.csv")
    assert gate[["study", "file", "row", "column"]].values.tolist() == [[SID, "dm.csv", "3", "SEX"]]
    assert not (out / "gate" / f"{SID}_build_findings.csv").exists()


def test_domain_data_error_fails_the_study(fake, tmp_path):
    fake.setattr(build, "REGISTRY", ["dm", "failing", "ae", "lb"])
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "out"
    assert build.run_build(kit.args(raw, out)) == 1
    f = read_csv(out / "gate" / f"{SID}_build_findings.csv")
    dom = f[f["check"] == "domain_error"]
    assert dom["message"].tolist() == ["failing: planted failure: impossible AE date 31-FEB-2025"]
    assert not (out / SID).exists()


def test_post_export_hooks(fake, tmp_path):
    hooks = [build.Hook("define", "export_fakes.fakehook", "write_define", ("study_dir", "datasets", "ctx")),
             build.Hook("listings", "export_fakes.nolistings", "write_listings", ("study_dir", "datasets", "reports", "ctx"))]
    fake.setattr(build, "POST_EXPORT_HOOKS", hooks)
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "out"
    assert build.run_build(kit.args(raw, out)) == 0
    assert (out / SID / "define.xml").read_text() == "<!-- test -->\nAE 3 TEST01\nDM 3 TEST01\nLB 4 TEST01\n"
    m = read_csv(out / SID / "manifest.csv")
    assert "define.xml" in set(m["file"])
    log = (out / SID / "build.log").read_text()
    assert "define: export_fakes.fakehook.write_define done" in log
    assert "listings: skipped (export_fakes.nolistings not in the tree yet)" in log


def test_real_hooks_are_registered():
    assert [(h.module, h.function) for h in build.POST_EXPORT_HOOKS] == [
        ("pipeline.adam.stage", "build_adam"), ("pipeline.package.acrf", "write_acrf"),
        ("pipeline.export.define", "write_define"), ("pipeline.report.listings", "write_listings")]


def test_cli_exit_code_2_for_unknown_study(fake, tmp_path, capsys):
    raw = kit.write_raw(tmp_path / "raw")
    code = main(["build", "--study", "NOPE", "--raw", str(raw), "--specs", str(kit.SPECS), "--out",
                 str(tmp_path / "o"), "--no-progress"])
    assert code == 2
    assert "NOPE" in capsys.readouterr().err


def test_progress_lines_and_silence():
    buf = io.StringIO()
    p = Progress("S1", 3, enabled=True, stream=buf)
    p.step("gate")
    p.step("lb", "skipped")
    lines = buf.getvalue().splitlines()
    assert [ln.rsplit(" ", 1)[0] for ln in lines] == ["[S1] 1/3 gate ok", "[S1] 2/3 lb skipped"]
    assert all(ln.endswith("s") for ln in lines)
    quiet = io.StringIO()
    q = Progress("S1", 3, stream=quiet)  # StringIO is not a terminal: off
    q.step("gate")
    assert quiet.getvalue() == "" and len(q.timings) == 1


def test_swap_in_restores_previous_on_failure(tmp_path, monkeypatch):
    target = tmp_path / SID
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging = writer.staging_dir(tmp_path, SID)
    (staging / "new.txt").write_text("new")
    real_rename = os.rename
    calls = []

    def flaky(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:
            raise OSError("planted rename failure")
        return real_rename(src, dst)

    monkeypatch.setattr(writer.os, "rename", flaky)
    with pytest.raises(OSError):
        writer.swap_in(staging, target)
    assert (target / "old.txt").read_text() == "old"
    monkeypatch.setattr(writer.os, "rename", real_rename)
    writer.swap_in(staging, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    writer.wait_removals()  # the previous folder is deleted in the background (writer.remove_later)
    assert sorted(p.name for p in tmp_path.iterdir()) == [SID]
