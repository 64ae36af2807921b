"""Bad-input battery, build side: usage errors on --out, disk and kill faults, concurrent builds,
one study's defect isolated from the others (fixture spec + fake domains: fast).

Each case asserts the exit code, that the one line names what and where, and what happened
to the outputs (previous study folder byte-identical, no staging left)."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "export"))
import exportkit as kit  # noqa: E402

import pipeline.build as build  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.export import manifest, writer  # noqa: E402

pytestmark = pytest.mark.badinput
SID = kit.STUDY


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(raw: Path, out: Path, *extra: str) -> int:
    return main(["build", "--raw", str(raw), "--specs", str(kit.SPECS), "--out", str(out), "--no-progress",
                 "--study", SID, *extra])


@pytest.fixture
def fake(monkeypatch):
    kit.use_fake_domains(monkeypatch)
    # a fixed clock: Dataset-JSON's creation time is SOURCE_DATE_EPOCH, else the current time,
    # and these tests compare rebuilt folders byte for byte
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    return monkeypatch


@pytest.fixture
def built(fake, tmp_path):
    """A first clean build of TEST01 into tmp/out; returns (raw, out, hashes of out/TEST01)."""
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "out"
    assert cli(raw, out) == 0
    return raw, out, tree(out / SID)


def no_leftovers(out: Path) -> list[str]:
    return [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".cache"]  # .cache: pipeline.buildcache


# ---- --out usage errors --------------------------------------------------------------------

def test_out_is_a_file_exit_2_one_line(fake, tmp_path, capsys):
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "out.txt"
    out.write_text("not a folder")
    assert cli(raw, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --out {out} is a file, not a folder; remove it or choose another --out"]
    assert out.read_text() == "not a folder"


def test_out_below_a_file_exit_2(fake, tmp_path, capsys):
    raw = kit.write_raw(tmp_path / "raw")
    (tmp_path / "f").write_text("x")
    assert cli(raw, tmp_path / "f" / "sub") == 2
    err = capsys.readouterr().err
    assert "cannot create the output folder" in err and str(tmp_path / "f") in err and "internal error" not in err


def test_validate_out_is_a_file_exit_2(fake, tmp_path, capsys):
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "o"
    out.write_text("")
    code = main(["validate", "--raw", str(raw), "--specs", str(kit.SPECS), "--out", str(out), "--study", SID])
    assert code == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_read_only_out_exit_2(fake, tmp_path, capsys):
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: simulate the refusal the kernel gives a user
        real = os.access
        fake.setattr(writer.os, "access", lambda p, m: False if Path(p) == out else real(p, m))
    else:
        out.chmod(0o555)
    try:
        assert cli(raw, out) == 2
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --out {out} is not writable; make it writable or choose another --out"]
    assert list(out.iterdir()) == []


def test_permission_lost_mid_build_exit_2(built, fake, capsys):
    raw, out, before = built

    def refuse(path, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    fake.setattr(build.writer, "write_text", refuse)
    assert cli(raw, out, "--no-cache") == 2  # the inputs did not change: force the rebuild
    err = capsys.readouterr().err
    assert f"{SID}: NOT built: cannot write" in err and "build.log: Permission denied" in err
    assert "internal error" not in err
    assert tree(out / SID) == before and no_leftovers(out) == []


# ---- disk full -----------------------------------------------------------------------------

def test_disk_full_late_in_build_exit_2_previous_kept(built, fake, capsys):
    raw, out, before = built

    def full(folder, shapes):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder) / "manifest.csv"))

    fake.setattr(build.manifest, "write_manifest", full)
    assert cli(raw, out, "--no-cache") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{SID}: NOT built: cannot write ")
    assert "manifest.csv: No space left on device; free some disk space or choose another --out" in err[0]
    assert tree(out / SID) == before
    assert no_leftovers(out) == []


def test_disk_full_writing_gate_report_exit_2(fake, tmp_path, capsys):
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "out"

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    fake.setattr(build.writer, "write_bytes_atomic", full)
    assert cli(raw, out) == 2
    err = capsys.readouterr().err
    assert "cannot write the gate reports to" in err and "gate_report.csv: No space left on device" in err
    assert not (out / SID).exists() and no_leftovers(out) == []


def test_disk_full_in_xpt_writer_exit_2(built, fake, capsys):
    raw, out, before = built

    def full(frame, spec, name, path, stamp, **options):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    fake.setattr(build.xpt, "write_xpt", full)
    assert cli(raw, out, "--no-cache") == 2
    assert "ae.xpt: No space left on device" in capsys.readouterr().err
    assert tree(out / SID) == before and no_leftovers(out) == []


# ---- kill faults: stale staging, concurrent builds -------------------------------------------

def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_staging_of_dead_build_removed(built, capsys):
    raw, out, before = built
    pid = dead_pid()
    stale = out / f".staging-{SID}-{pid}"
    (stale / "reports").mkdir(parents=True)
    (stale / "ae.xpt").write_bytes(b"half")
    trash = out / f".trash-{SID}-{pid}"
    trash.mkdir()
    assert cli(raw, out) == 0
    assert not stale.exists() and not trash.exists()
    assert f"removed {stale} (left by a build that is no longer running)" in capsys.readouterr().err
    assert tree(out / SID) == before


def test_live_build_staging_never_touched(built):
    raw, out, _ = built
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = out / f".staging-{SID}-{live.pid}"
        folder.mkdir()
        (folder / "x").write_text("in progress")
        assert writer.remove_stale_staging(out) == []
        assert (folder / "x").read_text() == "in progress"
    finally:
        live.kill()
        live.wait()
    assert writer.remove_stale_staging(out) == [folder.name]


def test_unrelated_dot_folders_kept(tmp_path):
    (tmp_path / ".staging-notapid").mkdir()
    (tmp_path / ".git").mkdir()
    a_file = tmp_path / f".staging-S-{dead_pid()}"
    a_file.write_text("a file, not a folder")
    assert writer.remove_stale_staging(tmp_path) == []
    assert (tmp_path / ".staging-notapid").is_dir() and (tmp_path / ".git").is_dir() and a_file.is_file()


def test_concurrent_build_into_same_out_refused(built, capsys):
    raw, out, before = built
    with writer.out_lock(out):
        assert cli(raw, out) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: another build (pid {os.getpid()}) is writing into {out} (lock {out / '.build.lock'}); "
                       "wait for it to finish or choose another --out"]
    assert tree(out / SID) == before
    assert not (out / ".build.lock").exists()
    assert cli(raw, out) == 0  # lock released


def test_lock_in_another_process_refused(built):
    raw, out, _ = built
    code = ("import sys, time; sys.path.insert(0, %r); from pipeline.export import writer\n"
            "with writer.out_lock(%r):\n    print('held', flush=True); time.sleep(30)\n") % (
        str(Path(__file__).parents[1]), str(out))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(build.PipelineError) as exc:
            with writer.out_lock(out):
                pass
        assert exc.value.exit_code == 2 and f"pid {holder.pid}" in str(exc.value)
    finally:
        holder.kill()
        holder.wait()
    with writer.out_lock(out):  # the kernel released the dead holder's lock
        pass


# ---- one study's defect does not stop the others ---------------------------------------------

def test_unexpected_failure_isolated_to_its_study(fake, tmp_path, capsys):
    raw = kit.write_raw(tmp_path / "raw")
    kit.write_raw(raw, study="TEST02")
    out = tmp_path / "out"
    real = build.build_study

    def flaky(study, *a, **k):
        if study.studyid == SID:
            raise ValueError("You are trying to merge on datetime64[s] and datetime64[us] columns")
        return real(study, *a, **k)

    fake.setattr(build, "build_study", flaky)
    code = main(["build", "--raw", str(raw), "--specs", str(kit.SPECS), "--out", str(out), "--no-progress"])
    assert code == 3
    cap = capsys.readouterr()
    assert "internal error" not in cap.err
    assert (f"{SID}: NOT built: the build stopped on an unexpected problem (ValueError: You are trying to merge"
            in cap.err)
    assert "TEST02: built 3 dataset(s)" in cap.out
    assert (out / "TEST02" / "dm.xpt").is_file() and not (out / SID).exists()
    f = pd.read_csv(out / "gate" / f"{SID}_build_findings.csv", dtype=str, keep_default_na=False)
    assert f[["study", "file", "check", "severity"]].values.tolist() == [[SID, "build", "build_failure", "error"]]


def test_unexpected_gate_failure_isolated(fake, tmp_path, capsys):
    import export_fakes.fakegate as fg

    raw = kit.write_raw(tmp_path / "raw")
    kit.write_raw(raw, study="TEST02")
    out = tmp_path / "out"
    real = fg.gate_study

    def flaky(raw_dir, study, spec):
        if study.studyid == "TEST02":
            raise KeyError("LBORRES")
        return real(raw_dir, study, spec)

    fake.setattr(fg, "gate_study", flaky)
    code = main(["build", "--raw", str(raw), "--specs", str(kit.SPECS), "--out", str(out), "--no-progress"])
    assert code == 1
    cap = capsys.readouterr()
    assert f"{SID}: built" in cap.out and "TEST02: not built: 1 gate error(s)" in cap.err
    gate = pd.read_csv(out / "gate" / "gate_report.csv", dtype=str, keep_default_na=False)
    row = gate[gate["study"] == "TEST02"].iloc[0]
    assert row["check"] == "gate_failure" and "KeyError: 'LBORRES'" in row["message"]


def test_debug_still_shows_the_traceback(fake, tmp_path):
    raw = kit.write_raw(tmp_path / "raw")

    def boom(*a, **k):
        raise ValueError("planted")

    fake.setattr(build, "build_study", boom)
    with pytest.raises(ValueError):
        cli(raw, tmp_path / "out", "--debug")


def test_manifest_still_verifies_after_isolated_failure(fake, tmp_path):
    raw = kit.write_raw(tmp_path / "raw")
    kit.write_raw(raw, study="TEST02")
    out = tmp_path / "out"
    assert main(["build", "--raw", str(raw), "--specs", str(kit.SPECS), "--out", str(out), "--no-progress"]) == 0
    assert manifest.verify_manifest(out / SID) == [] and manifest.verify_manifest(out / "TEST02") == []


# ---- numbers no writer can hold: refused before export --------------------------------------

from pipeline.export import numeric_guard  # noqa: E402


@pytest.mark.parametrize("value,why", [("1e999", "is not finite"), ("-1e999", "is not finite"),
                                       ("1e80", "exceeds the IBM float range"),
                                       ("1e-300", "is below the smallest IBM float")])
def test_non_exportable_number_refused_before_any_writer(built, fake, capsys, value, why):
    raw, out, before = built
    rows = [r if i != 1 else (*r[:4], value, r[5]) for i, r in enumerate(kit.LB_ROWS)]
    kit.write_raw(raw, lb=rows)
    called = []
    fake.setattr(build.xpt, "write_xpt", lambda *a, **k: called.append(a))
    fake.setattr(build.datasetjson, "write_dataset_json", lambda *a, **k: called.append(a))
    assert cli(raw, out) == 1
    err = capsys.readouterr().err
    assert called == [] and "internal error" not in err
    f = pd.read_csv(out / "gate" / f"{SID}_build_findings.csv", dtype=str, keep_default_na=False)
    e = f[f["check"] == "numeric.not_exportable"]
    assert len(e) == 1
    r = e.iloc[0]
    assert (r["study"], r["file"], r["column"], r["severity"]) == (SID, "LB", "LBSTRESN", "error")
    assert f"for subject {SID}-01-001" in r["message"] and why in r["message"]
    assert f"LB row {r['row']} LBSTRESN" in err
    assert tree(out / SID) == before and no_leftovers(out) == []


def test_numeric_guard_limits_by_hand():
    big = numeric_guard.XPT_MAX  # 2**249: pyreadstat writes the largest IBM number from here on
    assert big == 2.0 ** 249 and numeric_guard.IBM_MAX < 16.0 ** 63
    tiny = numeric_guard.IBM_MIN  # 16**-65, the smallest normalised IBM double
    assert tiny == 16.0 ** -65
    below_big, below_tiny = float(np.nextafter(big, 0)), float(np.nextafter(tiny, 0))
    frame = pd.DataFrame({"USUBJID": ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"],
                          "X": [1.0, float("nan"), below_big, -big, float("inf"), tiny, -below_tiny, 5e-324,
                                0.0, -0.0],
                          "T": list("0123456789")})
    f = numeric_guard.numeric_findings({"ZZ": frame}, None, "S")
    assert f[["file", "row", "column", "value"]].values.tolist() == [
        ["ZZ", 4, "X", repr(-big)], ["ZZ", 5, "X", "inf"], ["ZZ", 7, "X", repr(-below_tiny)], ["ZZ", 8, "X", "5e-324"]]
    assert f["message"].iloc[1] == ("ZZ.X = inf for subject E (record 5) is not finite (no NaN or Infinity in "
                                    "Dataset-JSON, none in XPT); not exported: correct the source value")
    assert "exceeds the IBM float range" in f["message"].iloc[0]
    assert f["message"].iloc[3] == ("ZZ.X = 5e-324 for subject H (record 8) is below the smallest IBM float of "
                                    "XPT v5 (5.3976e-79, 16**-65) and would be written as 0; not exported: "
                                    "correct the source value")


def test_numeric_guard_reads_spec_numeric_text_columns():
    from pipeline.spec import load_spec

    spec = load_spec(kit.SPECS)
    frame = pd.DataFrame({"USUBJID": ["A"], "LBSTRESN": ["inf"]}, dtype=object)
    f = numeric_guard.numeric_findings({"LB": frame}, spec, "S")
    assert f["column"].tolist() == ["LBSTRESN"]


def test_adam_checks_refuse_non_finite_numbers():
    from pipeline.adam import stage

    adsl = pd.DataFrame({"USUBJID": ["S-1"], "AGE": [float("inf")]})
    f = stage.check({"ADSL": adsl}, _adam_spec(), "S", pd.DataFrame({"USUBJID": ["S-1"]}))
    g = f[f["check"] == numeric_guard.CHECK]
    assert g[["file", "column", "value", "severity"]].values.tolist() == [["ADSL", "AGE", "inf", "error"]]


def _adam_spec():
    from pipeline.spec import load_spec

    root = Path(__file__).resolve().parents[1] / "specs"
    try:
        return load_spec(root, standard="adam")
    except Exception as exc:  # noqa: BLE001 - the ADaM spec is another helper's work in progress
        pytest.skip(f"ADaM spec not loadable here ({exc})")
