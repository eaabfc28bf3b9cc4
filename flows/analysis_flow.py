"""Deployment entry point of flow 3 (research scientist). The flow lives in the library."""

from minivess.orchestration.analysis_flow import analysis_flow

__all__ = ["analysis_flow"]

if __name__ == "__main__":
    analysis_flow()
