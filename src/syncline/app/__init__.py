"""Apps: the user's directory of functions, schema and auth config."""

from syncline.app._loader import App, AppLoadError, load_app

__all__ = ["App", "AppLoadError", "load_app"]
