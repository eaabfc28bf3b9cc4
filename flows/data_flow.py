"""Deployment entry point of flow 1 (data engineer). The flow lives in the library."""

from minivess.orchestration.data_flow import data_flow

__all__ = ["data_flow"]

if __name__ == "__main__":
    data_flow()
