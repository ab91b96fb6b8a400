"""Settings of the interop tests' project. Only what the models and the ORM need."""
import os

SECRET_KEY = "dbfixtures-interop-tests-only"
DEBUG = False
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.postgres",
    "shop",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DJ_DB", "dbf_django"),
        "USER": os.environ.get("DJ_USER", "postgres"),
        "HOST": os.environ.get("DJ_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DJ_PORT", "5432"),
    }
}
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
