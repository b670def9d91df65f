"""Apply a trained run (or its export) to new records: ``diagnosenet predict`` and ``export``.

- :mod:`.lineage` what a run was trained on and how its inputs were made, read from the run's
  own files (never re-typed);
- :mod:`.ecg` WFDB records → the run's windows → one decision per record;
- :mod:`.pmsi` RHS M05 files → the run's vocabulary → one row per (pseudonymised) stay;
- :mod:`.model` the class-probability function of a run directory or an exported model;
- :mod:`.export` a self-contained SavedModel with its model card;
- :mod:`.cli` the two commands.
"""
