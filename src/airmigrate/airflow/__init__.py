"""The only package that imports Airflow: DAG factory, task wrappers, runner and plugin."""
