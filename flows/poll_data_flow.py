"""Deployment entry point of the scheduled DVC polling flow."""

from minivess.orchestration.polling import poll_data_flow

__all__ = ["poll_data_flow"]
