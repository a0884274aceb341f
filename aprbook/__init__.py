"""The book's experiment code, built on :mod:`aprlib` (which never imports it): training runs and
pilots (:mod:`.runs`, :mod:`.pilots`, command lines ``python -m aprbook.runs`` / ``aprbook.pilots``),
run profiles (:mod:`.profiles`), result storage and provenance (:mod:`.provenance`), claims and
verdicts (:mod:`.learning_curves`, :mod:`.verdicts`), APR statistics (:mod:`.apr_stats`),
benchmarks (:mod:`.bench`, :mod:`.scaling`, ``python -m aprbook.bench``), memory (:mod:`.memory`),
the pyapr cross-check (:mod:`.pyapr_compat`), and beyond the thesis the segmentation chapter
(:mod:`.segmentation`; its stored, resumable runs :mod:`.segmentation_runs`, command line
``python -m aprbook.segmentation train|cost``)."""
