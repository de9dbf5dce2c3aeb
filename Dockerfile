# The airmigrate image: Airflow 3.3.2 plus this package, installed from the same lock as `make setup`.
# Needs requirements.lock, pyproject.toml, src/airmigrate/, dags/, plugins/, migrations/ and expectations/ from
# the build context (no README.md: setuptools only warns that the readme is missing).
FROM apache/airflow:3.3.2-python3.11

# /opt/airmigrate/var is where docker-compose.yml mounts its named volume (and the Helm values a shared
# ReadWriteMany claim): it has to exist in the image, owned by airflow (group 0, as the image expects), or
# Docker creates the volume root-owned and the tasks cannot write reports, backups or data docs.
USER root
RUN mkdir -p /opt/airmigrate/var/backups /opt/airmigrate/var/data_docs /opt/airmigrate/var/reports \
             /opt/airmigrate/var/logs /opt/airmigrate/var/docs/schema \
 && chown -R airflow:0 /opt/airmigrate \
 && chmod -R g+rwX /opt/airmigrate
USER airflow

COPY --chown=airflow:0 requirements.lock pyproject.toml /opt/airmigrate/
COPY --chown=airflow:0 src/airmigrate/ /opt/airmigrate/src/airmigrate/
RUN pip install --no-cache-dir --no-deps -r /opt/airmigrate/requirements.lock \
 && pip install --no-cache-dir --no-deps /opt/airmigrate
# The DAG files, the plugin and the migrations in the image itself, for Kubernetes (deploy/helm/values.yaml);
# docker-compose.yml mounts the project's folders over them so a new migration needs no rebuild.
COPY --chown=airflow:0 dags/ /opt/airmigrate/dags/
COPY --chown=airflow:0 plugins/ /opt/airmigrate/plugins/
COPY --chown=airflow:0 migrations/ /opt/airmigrate/migrations/
COPY --chown=airflow:0 expectations/ /opt/airmigrate/expectations/
