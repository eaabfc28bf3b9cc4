"""Deployment entry point of the main job (flows 1 -> 4 as subflows)."""

from minivess.orchestration.experiment_flow import experiment_flow

__all__ = ["experiment_flow"]

if __name__ == "__main__":
    experiment_flow()
