"""One module per stage. Each stage is a plain function over a :class:`~airmigrate.db.Target`
and a :class:`~airmigrate.spec.Migration`; Airflow tasks only wrap them, so every stage
runs and is tested without a scheduler. Stages are idempotent per run: a stage records
its completion in ``airmigrate.runs`` and a retried or resumed run skips what is done.
"""
