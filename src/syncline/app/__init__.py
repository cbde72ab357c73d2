"""Apps: the user's directory of functions, schema and auth config."""

from syncline.app._bundle import AppBundle
from syncline.app._changes import app_changes
from syncline.app._loader import App, AppLoadError, load_app

__all__ = ["App", "AppBundle", "AppLoadError", "app_changes", "load_app"]
