"""The project's foundation: the registry type, argument checks and atomic file writes.

Imports nothing of the project above it.
"""
