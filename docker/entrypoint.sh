#!/usr/bin/env bash
# The image's entrypoint: runs whatever command it is given, so every runner works unchanged.
#   (no arguments)                      -> minivess --help
#   minivess train ... / python -m ...  -> run as is (any executable on PATH)
#   prefect flow-run execute            -> run as is (Prefect docker and Kubernetes workers)
#   train --data /data ... / --help     -> minivess train ... (a first word that is not a program)
# SkyPilot's `image_id: docker:` replaces the entrypoint with /bin/bash and never reaches this.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  set -- minivess --help
elif [[ "$1" == -* ]] || ! command -v "$1" >/dev/null 2>&1; then
  set -- minivess "$@"
fi
exec "$@"
