# The airmigrate image: Airflow 3.3.2 plus this package, installed from the same lock as `make setup`.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.lock pyproject.toml /opt/airmigrate/
COPY --chown=airflow:root src/ /opt/airmigrate/src/
RUN pip install --no-cache-dir --no-deps -r /opt/airmigrate/requirements.lock \
 && pip install --no-cache-dir --no-deps /opt/airmigrate
