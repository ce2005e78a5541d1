"""Teach-pendant bridge: framed serial line protocol and transport."""
