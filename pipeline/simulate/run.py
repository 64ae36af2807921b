"""``python -m pipeline simulate``: regenerate the embedded raw extracts (``make raw``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd

from pipeline.config import load_study, study_ids
from pipeline.simulate.core import PLANT_COLUMNS, simulate_with_plants
from pipeline.simulate.writer import write_study
from pipeline.spec import load_spec

PLANTED_FILE = "planted.csv"


def form_labels(spec) -> dict[str, dict[str, str]]:
    c = spec.raw_columns
    return {f: dict(zip(g["column"], g["label"])) for f, g in c.groupby("form", sort=False)}


def run_simulate(args) -> int:
    """Simulate and write each selected study (all by default); list the planted items in
    ``RAW/planted.csv`` (rows of other studies are kept)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    specs = Path(getattr(args, "specs", "specs"))
    raw = Path(getattr(args, "raw", "raw"))
    spec = load_spec(specs)
    ids = list(args.study) if getattr(args, "study", None) else study_ids(specs)
    labels = form_labels(spec)
    all_plants = []
    for sid in ids:
        study = load_study(specs, sid)
        forms, plants = simulate_with_plants(study, spec, getattr(args, "subjects", None), getattr(args, "seed", None))
        paths = write_study(forms, study, raw, labels=labels)
        n = {f: len(df) for f, df in forms.items()}
        print(f"{sid}: {len(paths)} files in {raw / sid} ("
              + ", ".join(f"{f} {k}" for f, k in n.items()) + ")", file=sys.stderr)
        all_plants.append(plants)
    path = raw / PLANTED_FILE
    old = pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else pd.DataFrame(columns=PLANT_COLUMNS)
    old = old[~old["study"].isin(ids)] if "study" in old.columns else pd.DataFrame(columns=PLANT_COLUMNS)
    P = pd.concat([old] + all_plants, ignore_index=True)[PLANT_COLUMNS].astype(str)
    P = P.sort_values(["study", "form", "item", "subjid"], kind="stable")
    path.write_bytes(P.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    return 0
