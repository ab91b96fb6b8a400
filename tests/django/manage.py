#!/usr/bin/env python
"""The interop tests' Django project: DJ_DB names the PostgreSQL database (127.0.0.1:5432)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
