"""The HTTP surface: middlewares, health endpoints, pages and templates."""
