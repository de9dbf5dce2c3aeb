# The airmigrate image: Airflow 3.3.2 plus this package, installed from the same lock as `make setup`.
# Needs only requirements.lock, pyproject.toml and src/airmigrate/ from the build context (no README.md:
# setuptools only warns that the readme is missing).
FROM apache/airflow:3.3.2-python3.11

# /opt/airmigrate/var is where docker-compose.yml mounts its named volume; it has to exist in the image,
# owned by airflow (group 0, as the image expects), or Docker creates the volume root-owned and the tasks
# cannot write backups or data docs.
USER root
RUN mkdir -p /opt/airmigrate/var/backups /opt/airmigrate/var/data_docs \
 && chown -R airflow:0 /opt/airmigrate \
 && chmod -R g+rwX /opt/airmigrate
USER airflow

COPY --chown=airflow:0 requirements.lock pyproject.toml /opt/airmigrate/
COPY --chown=airflow:0 src/airmigrate/ /opt/airmigrate/src/airmigrate/
RUN pip install --no-cache-dir --no-deps -r /opt/airmigrate/requirements.lock \
 && pip install --no-cache-dir --no-deps /opt/airmigrate
