"""Shared fixtures: real reference servers (one venv per Gradio version), real test speech, and a real
PostgreSQL server for the shared ledger."""

from __future__ import annotations

from tests.support.postgres import pg_url, postgres_cluster
from tests.support.servers import gradio_server, server_factory

__all__ = ["gradio_server", "pg_url", "postgres_cluster", "server_factory"]
