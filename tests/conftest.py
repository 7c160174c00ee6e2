"""Shared fixtures: real reference servers (one venv per Gradio version) and real test speech."""

from __future__ import annotations

from tests.support.servers import gradio_server, server_factory

__all__ = ["gradio_server", "server_factory"]
