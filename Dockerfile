# One image for training, serving and the Prefect flows, in a CPU and a CUDA variant:
#   docker build -t minivess:cuda .                                # CUDA torch (default)
#   docker build --build-arg VARIANT=cpu -t minivess:cpu .         # CPU torch, no CUDA base
#   docker run --rm minivess:cpu minivess --help
#   docker run --gpus all -v "$PWD/data:/data" minivess:cuda minivess train --data /data
# The entrypoint (docker/entrypoint.sh) runs any command: `minivess ...`, `python -m ...`,
# `prefect flow-run execute` (what the docker / kubernetes work pools send). Every install step is
# .ci/install.sh, the script CI runs on a built wheel in a fresh venv. Runs as the non-root user
# `minivess` (uid 10001), who has passwordless sudo because SkyPilot's `image_id: docker:` setup
# (sshd, apt, FUSE bucket mounts) runs `sudo` inside the container. See docs/targets.md.
ARG VARIANT=cuda
ARG CUDA_BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
ARG CPU_BASE=ubuntu:24.04

FROM ${CUDA_BASE} AS base-cuda
FROM ${CPU_BASE} AS base-cpu

# hadolint ignore=DL3006
FROM base-${VARIANT}
ARG VARIANT
ARG TORCH_VERSION=2.13.0
# Optional: another torch index (a mirror) and a folder of wheels (docker/build-oci.sh mounts one).
ARG TORCH_INDEX=
ARG PIP_FIND_LINKS=
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git openssh-client \
       rsync ca-certificates curl sudo fuse3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group --shell /bin/bash minivess \
    && echo "minivess ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/minivess \
    && chmod 0440 /etc/sudoers.d/minivess

WORKDIR /opt/minivess
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY .ci/install.sh .ci/constraints.txt .ci/
COPY src ./src
COPY configs ./configs
COPY sky ./sky
# A regular (non-editable) install of the wheel contents, torch pinned to the variant's build.
RUN VENV=/opt/venv PYTHON=python3 PACKAGE=/opt/minivess EDITABLE=0 EXTRAS=all \
    TORCH_VARIANT=${VARIANT} TORCH_VERSION=${TORCH_VERSION} TORCH_INDEX=${TORCH_INDEX} \
    bash .ci/install.sh
COPY flows ./flows
COPY prefect.yaml ./
COPY docker/entrypoint.sh /usr/local/bin/minivess-entrypoint
RUN chown -R minivess:minivess /opt/minivess

USER 10001:10001
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/minivess-entrypoint"]
CMD ["minivess", "--help"]
