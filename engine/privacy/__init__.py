"""Patient rights and retention (issue 22, points 4 and 5).

- :mod:`carepath.privacy.kinds`: the registry of per-patient data kinds (one entry per table: how a
  patient's rows are found, which columns are personal, how erasure treats them);
- :mod:`carepath.privacy.export`: everything held about one patient, decrypted, with a manifest;
- :mod:`carepath.privacy.erase`: erasure (personal values removed or irreversibly de-identified,
  aggregates kept) and the refusal of later events for an erased patient;
- :mod:`carepath.privacy.retention`: ages per kind of data after which the maintenance flow purges or
  de-identifies it (configured by :mod:`carepath.privacy.retention_config`).
"""
