"""Readers and writers of on-disk formats (landmark files, videos, result files)."""
