# The memvault API. compose.yaml runs it next to MongoDB (MEMVAULT_MONGODB_URI); without that
# variable it runs the embedded engine with its files in MEMVAULT_DATA_DIR (/data: mount a volume).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MEMVAULT_DATA_DIR=/data

RUN groupadd --system --gid 10001 memvault \
    && useradd --system --uid 10001 --gid memvault --create-home --home-dir /home/memvault \
        --shell /usr/sbin/nologin memvault \
    && mkdir -p /data \
    && chown memvault:memvault /data

WORKDIR /srv/memvault
# The locked, hash-checked dependencies first (their layer stays cached while app/ changes), then
# memvault alone, built by the locked setuptools.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY app/ ./app/
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info

# numeric, so that runtimes enforcing "run as non-root" can verify it
USER 10001:10001
WORKDIR /data
EXPOSE 8000
CMD ["memvault", "serve", "--host", "0.0.0.0", "--port", "8000"]
