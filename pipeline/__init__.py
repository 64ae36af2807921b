"""CAR-T study data pipeline: raw CDASH extracts -> gate -> SDTM -> XPT/Dataset-JSON -> define.xml -> listings."""

__version__ = "0.1.0"
