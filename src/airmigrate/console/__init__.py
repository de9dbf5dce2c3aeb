"""The operations console in the Airflow UI (issue 12): every migration's state, progress, throttle and links;
one migration's stages, throughput chart, batches and plan; pause, resume, cancel, resize, re-target and
retry, each recorded with the Airflow user's name.

- :mod:`.data`: what the pages show, read from the target's state tables and Airflow's runs
- :mod:`.actions`: the buttons (checked, applied with :func:`airmigrate.control.act`)
- :mod:`.stage_rows`: a run's stages in pipeline order, timed over all their tries
- :mod:`.web`: the pages (Jinja2 templates, local static assets) and the JSON API; what it needs from Airflow
  (user, runs, permission, clearing) it receives from the plugin (``side.AIRFLOW``)
"""
