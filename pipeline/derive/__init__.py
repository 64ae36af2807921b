"""Shared derivations used by every domain: dates, study day, identifiers, SEQ, visits, EPOCH, baseline."""
