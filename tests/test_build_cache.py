"""The input-keyed build cache (pipeline.buildcache, issue 14): a study whose inputs did not change
keeps its outputs, untouched, and everything under ``--out`` is byte for byte what a full build
writes; any change of its raw files, of the specs, of SOURCE_DATE_EPOCH, or of its output folder,
and any failed build, means a full build of that study. Fixture spec, fake domain modules, a fake
gate with the real gate's interface (so the HTML and JUnit gate reports are written too)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "export"))
import exportkit as kit  # noqa: E402

import pipeline.build as build  # noqa: E402
from pipeline import buildcache, parallel  # noqa: E402
from pipeline.cli import main  # noqa: E402

SID, OTHER = kit.STUDY, "TEST02"
EPOCH = "1700000000"
#: TEST02's AE record with a verbatim term the fake gate warns about (a warning does not block)
AE_WARN = [*kit.AE_ROWS[:3], ("TEST01", "01", "002", "1", "GATE-WARNING", "Y", "UN-FEB-2025")]


def files(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (the lock file is held only while a build runs)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != ".build.lock"}


def stats(folder: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime in ns) of the folder and of every file in it: a rewrite changes them."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in [folder, *sorted(folder.rglob("*"))]}


@pytest.fixture
def env(monkeypatch, tmp_path):
    """Two clean studies (TEST02 with one gate warning), fake domains, the detail gate, fixed clock."""
    kit.use_fake_domains(monkeypatch)
    monkeypatch.setattr(build, "GATE_MODULE", "export_fakes.detailgate")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    raw = kit.write_raw(tmp_path / "raw")
    kit.write_raw(raw, study=OTHER, ae=AE_WARN)
    return raw


@pytest.fixture
def run(capsys):
    def go(raw: Path, out: Path, *extra: str, specs: Path = kit.SPECS) -> tuple[int, str, str]:
        code = main(["build", "--raw", str(raw), "--specs", str(specs), "--out", str(out), "--no-progress",
                     "--jobs", "1", *extra])
        cap = capsys.readouterr()
        return code, cap.out, cap.err
    return go


def kept(err: str, sid: str) -> bool:
    return f"{sid}: unchanged since the last build (inputs sha256 " in err


def test_warm_rerun_keeps_everything_and_matches_a_full_build(env, run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    code, first_out, err = run(env, out)
    assert code == 0 and not kept(err, SID) and not kept(err, OTHER)
    before, touched = files(out), {s: stats(out / s) for s in (SID, OTHER)}
    assert f".cache/{SID}.json" in before and f".cache/{OTHER}.json" in before
    gated = []
    import export_fakes.detailgate as dg

    real = dg.gate_detail
    monkeypatch.setattr(dg, "gate_detail", lambda *a: gated.append(a[1].studyid) or real(*a))
    code, again_out, err = run(env, out)
    assert code == 0 and gated == []                       # neither study gated again
    assert kept(err, SID) and kept(err, OTHER)
    key = buildcache.load(out, SID).key
    assert f"{SID}: unchanged since the last build (inputs sha256 {key[:12]}...), outputs kept in {out / SID}" in err
    assert again_out == first_out                          # the same outcome lines on stdout
    assert {s: stats(out / s) for s in (SID, OTHER)} == touched
    assert files(out) == before
    # a full build into a fresh folder writes the same bytes: study folders, gate reports, entries
    code, _, err = run(env, tmp_path / "full", "--no-cache")
    assert code == 0 and gated == [SID, OTHER] and not kept(err, SID)
    full = files(tmp_path / "full")
    assert full == before
    assert {"gate/gate_report.csv", "gate/gate_report.html", "gate/junit.xml", f"gate/{OTHER}_build_findings.csv"} <= set(full)
    assert b"planted gate warning" in full["gate/gate_report.csv"] and b"GATE-WARNING" in full["gate/junit.xml"]


def test_one_raw_byte_rebuilds_that_study_only(env, run, tmp_path):
    out = tmp_path / "out"
    assert run(env, out)[0] == 0
    other = stats(out / OTHER)
    old_lb = (out / SID / "lb.xpt").read_bytes()
    lb = env / SID / "lb.csv"
    lb.write_bytes(lb.read_bytes().replace(b"131.5", b"131.6"))   # one byte of one raw file
    code, _, err = run(env, out)
    assert code == 0 and not kept(err, SID) and kept(err, OTHER)
    assert stats(out / OTHER) == other
    assert (out / SID / "lb.xpt").read_bytes() != old_lb
    assert run(env, tmp_path / "full", "--no-cache")[0] == 0
    assert files(out) == files(tmp_path / "full")          # gate reports of one kept + one gated study


def test_spec_file_and_source_date_epoch_rebuild_all(env, run, tmp_path, monkeypatch):
    specs = tmp_path / "specs"
    shutil.copytree(kit.SPECS, specs)
    out = tmp_path / "out"
    assert run(env, out, specs=specs)[0] == 0
    code, _, err = run(env, out, specs=specs)
    assert code == 0 and kept(err, SID) and kept(err, OTHER)
    (specs / "raw" / "notes.txt").write_text("a reviewer's note\n")      # any file under --specs
    code, _, err = run(env, out, specs=specs)
    assert code == 0 and not kept(err, SID) and not kept(err, OTHER)
    stamp = (out / SID / "dm.json").read_bytes()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(EPOCH) + 86400))
    code, _, err = run(env, out, specs=specs)
    assert code == 0 and not kept(err, SID) and not kept(err, OTHER)
    assert (out / SID / "dm.json").read_bytes() != stamp          # Dataset-JSON's creation time moved
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    code, _, err = run(env, out, specs=specs)
    assert code == 0 and not kept(err, SID)


@pytest.mark.parametrize("edit", ["modify", "delete", "add"])
def test_hand_edited_study_folder_is_rebuilt(env, run, tmp_path, edit):
    out = tmp_path / "out"
    assert run(env, out)[0] == 0
    built, other = files(out / SID), stats(out / OTHER)
    if edit == "modify":
        p = out / SID / "dm.json"
        p.write_bytes(p.read_bytes().replace(b"TEST01-01-001", b"TEST01-01-009", 1))
    elif edit == "delete":
        (out / SID / "reports" / "findings.csv").unlink()
    else:
        (out / SID / "notes.txt").write_text("added by hand\n")
    code, _, err = run(env, out)
    assert code == 0 and not kept(err, SID) and kept(err, OTHER)
    assert files(out / SID) == built                      # rebuilt: the edit is gone
    assert stats(out / OTHER) == other


def test_files_added_later_by_other_commands_are_kept(env, run, tmp_path):
    """CDISC CORE reports and the guides' drafts are made from these outputs, after the build."""
    out = tmp_path / "out"
    assert run(env, out)[0] == 0
    (out / SID / "guides").mkdir()
    (out / SID / "guides" / "csdrg.html").write_text("<p>draft</p>\n")
    (out / SID / "reports" / "core_report.csv").write_text("rule\n")
    code, _, err = run(env, out)
    assert code == 0 and kept(err, SID)
    assert (out / SID / "guides" / "csdrg.html").is_file() and (out / SID / "reports" / "core_report.csv").is_file()


def test_a_study_with_gate_errors_is_never_kept(env, run, tmp_path):
    kit.write_raw(env, dm=[kit.DM_ROWS[0], ("TEST01", "01", "002", "60", "GATE-ERROR", "15-FEB-2025")])
    out = tmp_path / "out"
    code, _, err = run(env, out)
    assert code == 1 and f"{SID}: not built: 1 gate error(s)" in err
    first = files(out)
    assert f".cache/{SID}.json" not in first and f".cache/{OTHER}.json" in first
    code, _, err = run(env, out)
    assert code == 1 and f"{SID}: not built: 1 gate error(s)" in err and not kept(err, SID) and kept(err, OTHER)
    assert files(out) == first


def test_a_study_with_build_errors_is_never_kept(env, run, tmp_path):
    bad_ae = list(kit.AE_ROWS) + [("TEST01", "01", "002", "9", "Fi\u00e8vre", "N", "16-FEB-2025")]
    kit.write_raw(env, ae=bad_ae)                          # passes the gate, fails the output checks
    out = tmp_path / "out"
    code, _, err = run(env, out)
    assert code == 1 and f"{SID}: NOT built: 1 error(s)" in err
    first = files(out)
    assert f"gate/{SID}_build_findings.csv" in first and f".cache/{SID}.json" not in first
    code, _, err = run(env, out)
    assert code == 1 and f"{SID}: NOT built: 1 error(s)" in err and not kept(err, SID)
    assert files(out) == first


def test_no_cache_rebuilds_and_leaves_a_fresh_entry(env, run, tmp_path):
    out = tmp_path / "out"
    assert run(env, out)[0] == 0
    before, touched = files(out), stats(out / SID)
    code, _, err = run(env, out, "--no-cache")
    assert code == 0 and not kept(err, SID) and not kept(err, OTHER)
    assert stats(out / SID)["."] != touched["."]             # a new folder was swapped in
    assert files(out) == before
    code, _, err = run(env, out, "--rebuild")
    assert code == 0 and not kept(err, SID)
    assert kept(run(env, out)[2], SID)


class Crash(BaseException):
    """Stands for the process being killed."""


def test_crash_after_swap_in_leaves_no_entry(env, run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run(env, out)[0] == 0
    original = files(out / SID)
    lb = env / SID / "lb.csv"
    text = lb.read_bytes()
    lb.write_bytes(text.replace(b"131.5", b"131.6"))

    def killed(*a, **k):
        raise Crash

    real = build._remember
    monkeypatch.setattr(build, "_remember", killed)
    with pytest.raises(Crash):
        run(env, out, "--study", SID)
    monkeypatch.setattr(build, "_remember", real)
    assert files(out / SID) != original and not buildcache.entry_path(out, SID).exists()
    lb.write_bytes(text)                                   # back to the inputs of the first build
    code, _, err = run(env, out)
    assert code == 0 and not kept(err, SID)                # the folder is of the other inputs: rebuilt
    assert files(out / SID) == original


def test_an_entry_beside_another_folder_is_not_reused(env, run, tmp_path):
    """An entry copied beside a folder it does not describe (e.g. restored from a backup)."""
    out = tmp_path / "out"
    assert run(env, out)[0] == 0
    entry = buildcache.entry_path(out, SID).read_bytes()
    lb = env / SID / "lb.csv"
    text = lb.read_bytes()
    lb.write_bytes(text.replace(b"131.5", b"131.6"))
    assert run(env, out)[0] == 0
    buildcache.entry_path(out, SID).write_bytes(entry)     # the old entry, the new folder
    lb.write_bytes(text)
    code, _, err = run(env, out)
    assert code == 0 and not kept(err, SID)


def test_parallel_run_dispatches_only_the_changed_study(env, run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run(env, out, "--jobs", "2")[0] == 0
    lb = env / SID / "lb.csv"
    lb.write_bytes(lb.read_bytes().replace(b"131.5", b"131.6"))
    calls = []
    real = parallel.run_ordered
    monkeypatch.setattr(parallel, "run_ordered",
                        lambda func, tasks, jobs, cb, *more, **kw: calls.append(
                            (func.__name__, [next(a.studyid for a in t if hasattr(a, "studyid")) for t in tasks]))
                        or real(func, tasks, jobs, cb, *more, **kw))
    code, stdout, err = run(env, out, "--jobs", "2")
    assert code == 0 and kept(err, OTHER) and not kept(err, SID)
    assert calls == [("_gate_one", [SID]), ("_build_one", [SID])]
    assert [ln.split(":")[0] for ln in stdout.splitlines()] == [SID, OTHER]   # study order


def test_key_covers_the_inputs_by_hand(env, tmp_path):
    """The key moves with a raw file of the study, its MedDRA folder, a spec file, the mode."""
    from pipeline.config import load_study

    study = load_study(kit.SPECS, SID)
    inputs = buildcache.Inputs.of(kit.SPECS, "final", "config", [])
    key = buildcache.study_key(inputs, env, study)
    assert key == buildcache.study_key(buildcache.Inputs.of(kit.SPECS, "final", "config", []), env, study)
    assert buildcache.Inputs.of(kit.SPECS, "draft", "config", []) != inputs
    assert buildcache.Inputs.of(kit.SPECS, "final", "other", []) != inputs
    (env / SID / "extra.csv").write_text("x\n")             # a file the reader would report as stray
    assert buildcache.study_key(inputs, env, study) != key
    (env / SID / "extra.csv").unlink()
    assert buildcache.study_key(inputs, env, study) == key
    (env / OTHER / "lb.csv").write_text("changed\n")        # another study's file: not in this key
    assert buildcache.study_key(inputs, env, study) == key
    versions = buildcache.installed_versions()
    assert versions is not None and any(v.startswith("pandas ") for v in versions)
    assert any(v.startswith("pyreadstat ") for v in versions) and not any(v.startswith("pytest ") for v in versions)


def test_real_study_warm_rerun_is_byte_identical(built_study, tmp_path, capsys, monkeypatch):
    """The real gate (CSV, HTML, JUnit reports) of the session's build of the smallest shipped study."""
    from conftest import BUILT_EPOCH, RAW, SPECS

    sid = built_study.name
    out = tmp_path / "sdtm"
    shutil.copytree(built_study.parent, out, symlinks=True)
    before = files(out)
    if f".cache/{sid}.json" not in before:
        pytest.fail("the session build wrote no cache entry")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", BUILT_EPOCH)
    code = main(["build", "--study", sid, "--raw", str(RAW), "--specs", str(SPECS), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0 and kept(err, sid)
    assert files(out) == before
    assert {"gate/gate_report.html", "gate/junit.xml"} <= set(before)
    assert os.environ["SOURCE_DATE_EPOCH"] == BUILT_EPOCH


def test_key_follows_a_linked_spec_folder(env, tmp_path):
    """A part of --specs may be a link to another folder: its files are inputs too."""
    from pipeline.config import load_study

    specs, elsewhere = tmp_path / "specs", tmp_path / "elsewhere"
    shutil.copytree(kit.SPECS, specs)
    shutil.move(str(specs / "sdtm"), elsewhere)
    (specs / "sdtm").symlink_to(elsewhere, target_is_directory=True)
    study = load_study(specs, SID)
    key = buildcache.study_key(buildcache.Inputs.of(specs, "final", "config", []), env, study)
    first = next(p for p in sorted(elsewhere.rglob("*.csv")))
    first.write_bytes(first.read_bytes() + b"\n")
    assert buildcache.study_key(buildcache.Inputs.of(specs, "final", "config", []), env, study) != key
