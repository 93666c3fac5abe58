# syntax=docker/dockerfile:1
# One image for every QuizMesh process; the command picks which one runs:
#   quizmesh-quiz | quizmesh-score | quizmesh-leaderboard | quizmesh-stream
#   quizmesh-sync (the CronJob) | quizmesh-migrate (the migration Job) | quizctl
# Build: docker build -t quizmesh:dev .   (docs/operations.md: build, push, pin)

# Pinned by version; CI's release build pins the digest too (--build-arg
# PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...). Both stages must use the
# same image: the virtualenv links to its interpreter.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/quizmesh
WORKDIR /src
# Only what the package needs (see .dockerignore): gen/ is committed, so the image
# needs no protoc.
COPY pyproject.toml constraints.txt ./
COPY gen ./gen
COPY services ./services
COPY quizctl ./quizctl
COPY devstack ./devstack
# A regular (not editable) install: the runtime stage copies only the virtualenv,
# with its bytecode compiled here, because the root filesystem is read-only there.
RUN /opt/quizmesh/bin/pip install --no-cache-dir -c constraints.txt . \
 && /opt/quizmesh/bin/python -c "import services.quiz.server, services.score.server, services.leaderboard.server, services.stream.server, services.sync.main, services.database.migrate"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="quizmesh" \
      org.opencontainers.image.description="QuizMesh services; the command picks one"
# A fixed numeric user, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 quizmesh \
 && useradd --system --uid 10001 --gid quizmesh --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin quizmesh
COPY --from=build /opt/quizmesh /opt/quizmesh
ENV PATH=/opt/quizmesh/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    QUIZMESH_GRPC_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
# gRPC: quiz, score, leaderboard, stream; metrics on 9464.
EXPOSE 50051 50052 50053 50054 9464
CMD ["quizctl", "--help"]
