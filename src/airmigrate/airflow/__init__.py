"""The only package that imports Airflow: DAG factory, task wrappers, runner and plugin.

Airflow's server-side modules (``airflow.models``, ``airflow.api_fastapi``, ``airflow.utils.session``, SQLAlchemy)
are imported inside the functions that need them: these modules run in the dag-processor and in task processes
too, where Airflow 3 keeps its metadata database out of reach and parsing must stay fast; only the task SDK
(``airflow.sdk``) is imported at module level."""
