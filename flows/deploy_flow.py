"""Deployment entry point of flow 4 (platform engineer). The flow lives in the library."""

from minivess.orchestration.deploy_flow import deploy_flow

__all__ = ["deploy_flow"]

if __name__ == "__main__":
    deploy_flow()
