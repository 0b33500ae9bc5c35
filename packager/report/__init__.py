"""The record of a build and what every reader checks against it: `BuildReport` (report.json), the provenance
statement, signatures and what becomes of them, the recorded sample and the one comparison, the store's layout and
locks, names and versions."""
