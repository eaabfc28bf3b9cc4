# One image for training and serving: `minivess train ...`, `minivess experiment ...`,
# `minivess serve ...` (ENTRYPOINT is `minivess`).
#   docker build -t minivess .                                    # CUDA base (default)
#   docker build --build-arg BASE_IMAGE=ubuntu:24.04 -t minivess-cpu .   # CPU-only
#   docker run --gpus all -v "$PWD/data:/data" minivess train --data /data --model dynunet
# SkyPilot: set `image_id: docker:<registry>/minivess:<tag>` in configs/targets/<target>.yaml.
ARG BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git openssh-client \
       rsync ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV" \
    && useradd --create-home --uid 10001 --user-group --shell /bin/bash minivess

WORKDIR /opt/minivess
# Dependencies come from pyproject.toml; copying only what the install needs keeps the layer
# cache valid when configs or tests change.
COPY pyproject.toml README.md .ci/constraints.txt ./
COPY src ./src
# constraints.txt pins what the test suite ran with (torch is left to the base image's CUDA).
RUN pip install --no-cache-dir -c constraints.txt . && chown -R minivess:minivess "$VIRTUAL_ENV"
COPY --chown=minivess:minivess configs ./configs
COPY --chown=minivess:minivess sky ./sky

USER 10001:10001
WORKDIR /home/minivess
ENV MINIVESS_CONFIG_DIR=/opt/minivess/configs
EXPOSE 3000
ENTRYPOINT ["minivess"]
CMD ["--help"]
