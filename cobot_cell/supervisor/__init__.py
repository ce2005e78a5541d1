"""Supervisor: production log (SQLite) and KPIs."""
