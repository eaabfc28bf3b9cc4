"""Prefect flows: one per persona (data, train, analysis, deploy) plus the experiment chain.

Flows orchestrate; every computation is a library call. Importing this package imports prefect.
"""
