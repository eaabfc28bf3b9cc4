"""Deployment entry point of flow 2 (data scientist). The flow lives in the library."""

from minivess.orchestration.train_flow import train_flow

__all__ = ["train_flow"]

if __name__ == "__main__":
    train_flow()
