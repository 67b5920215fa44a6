"""ASGI entry point: `python -m uvicorn src.api.app:app` (cwd = examples/camera_api).

Settings are read once here, at import; an invalid value raises SettingsError and the
worker refuses to start.
"""
from .factory import create_app
from .settings import Settings

app = create_app(Settings.from_env())
