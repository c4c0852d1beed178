"""The labelaudit review web app (FastAPI, server-rendered pages, JSON API under /api)."""

from .main import create_app

__all__ = ["create_app"]
